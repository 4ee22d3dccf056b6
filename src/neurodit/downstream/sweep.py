"""When does synthetic data help? Learning curves under data scarcity and a transfer test that is fair.

Two settings, each cross-validated over participants (``StratifiedGroupKFold``, ``folds`` x ``seeds``), each
arm of one (seed, fold) tested on the same held-out real participants, so arms compare run by run:

**augment** (the source task, sex): the training participants of each outer fold are cut to nested,
sex-stratified fractions (``real_fractions``: 10 % is inside 25 %, inside 50 %, ...; at least
``MIN_PER_CLASS`` participants per class). From each fraction a validation hold-out is set aside for early
stopping; on the rest (the classifier's training participants) **every generator is fitted again**
(``generators``: a registry name, ``neurodit.generators``) in its own run folder
(``generators/<name>/s<seed>-f<fold>-r<fraction>/``, whose ``train_participants.tsv`` lists exactly those
participants), and sampled with ``m`` x the participants of each class (``synthetic_multiples``; the
multiples of one fit are nested). A generator that saw the other 90 % would carry their information into
the "scarce" arm, and one that saw a validation or test participant would leak it: both are impossible
here, and the run folders prove it. ``m = 0`` (real data only) is trained once per fraction and shared by
every generator. Generators costly to refit (the DiT) may be refitted at some fractions only
(``generator_fractions``); results say which ran where.

**transfer** (the paper's setting, Chattopadhyay et al. 2025): source backbones are trained once per seed
on every real SOURCE participant (``real``), plus every volume of a synthetic cohort
(``real+synthetic[NAME]``, one per ``synthetic`` cohort: a generator trained on the source, as in the
paper), on sex, or on sex and age (``pretrain: [sex+age]``: age tracks atrophy; with both tasks every backbone
exists once per task, named ``real (sex)``, ``real (sex+age)`` ..., and each sex + age backbone is compared
with its sex one). The TARGET (AD vs CN)
training participants of each outer fold are cut to nested, diagnosis-stratified fractions
(``target_fractions``); each fraction trains ``scratch`` and, per backbone, a linear probe (backbone
frozen, head trained) and a fine-tuned network, all from one head initialisation per (seed, fold).
A synthetic cohort that copies source participants is refused: its ids must differ from the source's, and
no synthetic volume may be a copy of a source one (:func:`copy_audit`, on the memorisation audit of
:mod:`neurodit.metrics.memorization`).

``SWEEP_DIR`` (written atomically):
  - ``results.json``::

      {"schema": "neurodit.sweep/1", "config": {...SweepConfig...}, "data": {...},
       "augment": {"cells": [{"generator" ("real" for m = 0), "real_fraction", "multiple", "n_real",
                              "n_synthetic", "n_runs", "metrics": {metric: {"mean", "sd", "ci95", "n",
                              "values"}}}],
                   "comparisons": [{"generator", "real_fraction", "multiple", "n_real", "metrics":
                                    {metric: paired}, "outcome", "verdict"}],  # vs m = 0, same fraction
                   "fits": {generator: {"fractions": [...], "settings": {...}, "n_fits", "seconds"}}},
       "transfer": {"cells": [{"backbone", "mode" ("scratch" | "probe" | "finetune"), "target_fraction",
                               "n_target", "n_runs", "metrics"}],
                    "comparisons": [{"question", "arm", "baseline", "target_fraction", "n_target",
                                     "metrics", "outcome", "verdict"}],
                    "backbones": {name: {"base", "pretrain", "n_volumes", "copy_audit", "folder"}}},
       "verdicts": {"augment": [one line per generator x multiple],
                    "transfer": [one line per question], "probe_vs_finetune": str},
       "timing": {"seconds", "models_trained"}}

    ``n_real`` / ``n_target``: the mean number of training participants (validation hold-out
    included) of the cell's runs. ``values`` are in run order (seed-major, then fold): ``values[i]`` of
    two cells of one setting and fraction are a pair. Comparison CIs: percentile bootstrap of the mean
    paired difference; outcomes as :func:`neurodit.downstream.stats.verdict` (CI and Wilcoxon).
  - ``runs.csv`` (one row per model: setting, cell, seed, fold, counts, epochs, seconds, metrics),
    ``augment.png`` and ``transfer.png`` (the learning curves, 95 % CI bands), ``run.json``.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neurodit.config import CONFIG_DIR, to_dict
from neurodit.downstream.config import DownstreamConfig
from neurodit.downstream.labelled import LabelledSet
from neurodit.downstream.splits import grouped_folds, grouped_holdout
from neurodit.downstream.stats import METRICS, classification_metrics, paired_comparison, summarize, verdict
from neurodit.errors import NeuroditError
from neurodit.formatting import signed
from neurodit.generators import registry
from neurodit.io import atomic_dir, atomic_write_text, write_json, write_run_info

SCHEMA = "neurodit.sweep/1"
SWEEP_CONFIG_DIR = CONFIG_DIR / "sweep"  # configs/sweep/<name>.yaml: the sweep presets (demo.yaml)
RESULTS_FILE = "results.json"
FIGURES = ("augment", "transfer")
MIN_PER_CLASS = 2  # a fraction keeps at least this many participants per class (one trains, one validates)
COPY_FRACTION = 0.01  # a synthetic volume this much closer to a source one than real neighbours are is a copy
MODES = ("probe", "finetune")
PRETRAIN = ("sex", "sex+age")
PRUNE = ("model", "checkpoints", "samples", "cache")  # heavy parts of a per-fraction generator run


@dataclass
class SweepConfig:
    """Settings of :func:`run_sweep` (saved in ``results.json`` and ``run.json``)."""

    real_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    synthetic_multiples: tuple[int, ...] = (0, 1, 4)
    # refitted per (seed, fold, fraction), registry names; empty: no augment setting
    generators: tuple[str, ...] = (registry.REFIT,)
    # generator -> the fractions it is refitted at (default: every fraction); a DiT fit per fraction costs
    # its full training budget, so a CPU sweep may refit it at a few only
    generator_fractions: dict[str, list[float]] = field(default_factory=dict)
    # generator -> TrainConfig keys (preset, max_steps, batch_size, label, age_bins, preset_overrides, ...)
    generator_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    sample_steps: int = 12
    guidance: float = 1.5
    target_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # empty: no transfer setting
    modes: tuple[str, ...] = MODES
    pretrain: tuple[str, ...] = ("sex",)  # the source backbones' task(s): sex, sex+age
    keep_generator_models: bool = False  # keep the per-fraction generators' weights (else only their records)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)  # classifier, folds, seeds, epochs

    def __post_init__(self) -> None:
        for name, fr in (("real_fractions", self.real_fractions), ("target_fractions", self.target_fractions),
                         *((f"generator_fractions.{g}", v) for g, v in self.generator_fractions.items())):
            bad = [f for f in fr if not 0.0 < float(f) <= 1.0]
            if bad:
                raise NeuroditError(f"{name}: fractions must be in (0, 1], got {bad}")
        if any(int(m) < 0 for m in self.synthetic_multiples):
            raise NeuroditError(f"synthetic_multiples must be >= 0, got {list(self.synthetic_multiples)}")
        self.pretrain = (self.pretrain,) if isinstance(self.pretrain, str) else tuple(self.pretrain)
        if not self.pretrain or (bad := [t for t in self.pretrain if t not in PRETRAIN]):
            raise NeuroditError(f"pretrain must be one or more of {', '.join(PRETRAIN)}, got {list(self.pretrain)}")
        if bad := [m for m in self.modes if m not in MODES]:
            raise NeuroditError(f"unknown transfer mode(s) {bad} (known: {', '.join(MODES)})")
        self.real_fractions = tuple(sorted(float(f) for f in self.real_fractions))
        self.target_fractions = tuple(sorted(float(f) for f in self.target_fractions))
        self.synthetic_multiples = tuple(sorted({int(m) for m in self.synthetic_multiples} | {0}))

    def backbone_names(self, cohorts) -> dict[str, tuple[str, str]]:
        """Backbone name -> (base, task): base ``real`` or ``real+synthetic[NAME]`` per cohort; the task
        in the name only when several are pretrained (``real (sex+age)``)."""
        bases = ["real", *(f"real+synthetic[{n}]" for n in cohorts)]
        several = len(self.pretrain) > 1
        return {(f"{b} ({t})" if several else b): (b, t) for t in self.pretrain for b in bases}

    def fractions_of(self, generator: str) -> tuple[float, ...]:
        """The real fractions ``generator`` is refitted at."""
        own = self.generator_fractions.get(generator)
        return self.real_fractions if own is None else tuple(f for f in self.real_fractions
                                                             if any(math.isclose(f, g) for g in own))


def load_sweep_config(config_file: str | Path | None = None, overrides: list[str] | None = None,
                      **flags: Any) -> SweepConfig:
    """SweepConfig from the defaults, a YAML file, ``--set key=value`` overrides and flags (None: not
    given), in that order of priority from low to high; unknown keys are errors."""
    from neurodit.config import deep_merge, from_dict, parse_overrides, read_yaml

    data = to_dict(SweepConfig())
    for layer in (read_yaml(config_file) if config_file else {}, parse_overrides(overrides),
                  {k: v for k, v in flags.items() if v is not None}):
        data = deep_merge(data, layer)
    return from_dict(SweepConfig, data)


# ------------------------------------------------------------------------------------- pure helpers
def nested_fractions(labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], seed: int,
                     min_per_class: int = MIN_PER_CLASS) -> dict[float, np.ndarray]:
    """Nested, class-stratified participant subsets: fraction -> the participant ids it keeps.

    ``labels``/``groups``: (N,) per volume (one label per participant). Per class, one seeded order of
    its participants; a fraction keeps the first ``ceil(f * n_class)`` (at least ``min_per_class``, at
    most all), so a smaller fraction is always inside a larger one (a learning curve adds participants,
    it does not swap them)."""
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups).astype(str)
    uniq, first = np.unique(groups, return_index=True)
    lab = labels[first]
    rng = np.random.default_rng(seed)
    order = {c: rng.permutation(uniq[lab == c]) for c in np.unique(lab)}
    out = {}
    for f in fractions:
        keep = [ids[:min(len(ids), max(min_per_class, math.ceil(f * len(ids))))] for ids in order.values()]
        out[float(f)] = np.sort(np.concatenate(keep))
    return out


def rows_of(ds: LabelledSet, ids) -> np.ndarray:
    """Volume indices (sorted) of the participants ``ids`` in ``ds``."""
    return np.flatnonzero(np.isin(ds.groups, np.asarray(list(ids)).astype(str)))


def first_per_class(labels: np.ndarray, counts: dict[int, int]) -> np.ndarray:
    """Indices of the first ``counts[c]`` volumes of each class c, in order (a multiple's share of a
    sample drawn as m_max blocks: the first m blocks have exactly m x the class counts)."""
    labels = np.asarray(labels, dtype=int)
    idx = [np.flatnonzero(labels == c)[:n] for c, n in counts.items()]
    got = {c: len(i) for c, i in zip(counts, idx, strict=True)}
    if got != {c: n for c, n in counts.items()}:
        raise NeuroditError(f"the synthetic sample has {got} volumes per class, {counts} needed")
    return np.sort(np.concatenate(idx))


def copy_audit(synthetic: LabelledSet, source: LabelledSet, where: str | Path) -> dict[str, Any]:
    """Refuse a synthetic cohort that copies source participants (it would leak them): NeuroditError
    naming ``where`` when an id is shared, or when a synthetic volume is a copy: its distance to the nearest
    source volume (1 - Pearson r inside the brain, :func:`neurodit.metrics.memorization.memorization_audit`)
    is under ``COPY_FRACTION`` of the median distance between a source participant and its nearest other
    one. Relative, because how alike two real brains are depends on the cohort and grid (tiny test cohorts
    correlate at 0.999; the demo's at 0.6). Returns the audit's summary."""
    from neurodit.metrics.memorization import memorization_audit

    shared = sorted(set(synthetic.groups) & set(source.groups))
    if shared:
        raise NeuroditError(f"synthetic participant ids equal source ones (e.g. {shared[0]}): a synthetic cohort "
                            "must not copy source participants", where)
    mask = (source.volumes > -1.0 + 1e-6).any(axis=0)  # (D, H, W) voxels where any source volume has brain
    audit = memorization_audit(synthetic.volumes, source.volumes, None, mask)
    syn_d = 1.0 - audit["_arrays"]["syn_nn"]  # (S,) distance of each synthetic volume to its nearest source one
    limit = COPY_FRACTION * float(np.median(1.0 - audit["_arrays"]["heldout_nn"]))
    copies = np.flatnonzero(syn_d < limit)
    if copies.size:
        best = audit["closest"][0]  # the highest r, i.e. the nearest copy
        i, who = best["synthetic"], f" (source {source.groups[best['reference']]})"
        raise NeuroditError(f"{copies.size} synthetic volume(s) copy a source participant: e.g. row {i + 1}{who} at "
                            f"distance {syn_d[i]:.2g} (1 - r), under {COPY_FRACTION:.0%} of the median distance "
                            f"between real neighbours ({limit / COPY_FRACTION:.2g}): it would leak them", where)
    return {"n_copies": 0, "copy_limit": limit, "max_r": audit["syn_nn"]["max"],
            "source_neighbour_r_median": audit["heldout_nn"]["median"],
            **{k: audit[k] for k in ("threshold", "fraction_above", "binom_p", "flagged")}}


# ------------------------------------------------------------------------------------- the runner
class _Fits:
    """Trains and tests the classifiers; accumulates ``runs`` (one dict per model)."""

    def __init__(self, cfg: SweepConfig, progress: Callable[[str], None]):
        from neurodit.downstream.experiment import device_of

        self.cfg, self.ds = cfg, cfg.downstream
        self.device = device_of(self.ds.device)
        self.progress = progress
        self.runs: list[dict[str, Any]] = []

    def fit(self, train: LabelledSet, val: LabelledSet, init_seed: int, **kw):
        from neurodit.downstream.experiment import fit_model

        return fit_model(self.ds, self.device, train, val, init_seed, **kw)

    def test(self, model, fit, test: LabelledSet, row: dict[str, Any], train: LabelledSet, val: LabelledSet,
             n_syn: int = 0) -> None:
        from neurodit.downstream.experiment import per_participant
        from neurodit.downstream.train import predict_proba
        from neurodit.models.fit import bf16_supported

        p = predict_proba(model, test.volumes, batch_size=2 * self.ds.batch_size, device=self.device,
                          amp=self.ds.amp and bf16_supported(self.device))[:, 1]
        _, y, pp = per_participant(test.groups, test.labels, p)
        m = classification_metrics(y, pp)
        self.runs.append({**row, "n_train": len(np.unique(train.groups)) + len(np.unique(val.groups)),
                          "n_fit": len(np.unique(train.groups)), "n_val": len(np.unique(val.groups)),
                          "n_test": len(y), "n_synthetic": int(n_syn), "best_epoch": fit.best_epoch,
                          "epochs_run": fit.epochs_run, "seconds": round(fit.seconds, 3), **m})
        cell = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("seed", "fold"))
        self.progress(f"{cell:60s} seed {row['seed']} fold {row['fold']}: balanced accuracy "
                      f"{m['balanced_accuracy']:.3f}")


# ------------------------------------------------------------------------------------- augment
def _fit_generator(name: str, cfg: SweepConfig, prep_dir: Path, ids: np.ndarray, run_dir: Path, work: Path,
                   seed: int) -> float:
    """Fit generator ``name`` on the participants ``ids`` of PREP_DIR into ``run_dir``; its seconds."""
    from neurodit.data.prepare import subset_prepared
    from neurodit.generators import fit
    from neurodit.train import resolve_train_config

    sub = subset_prepared(prep_dir, ids, work / "prep", overwrite=True)
    t0 = time.perf_counter()
    settings = dict(cfg.generator_settings.get(name, {}))
    flags = {"prep_dir": str(sub), "out": str(run_dir), "generator": name, "seed": seed, "overwrite": True}
    fit(sub, resolve_train_config(None, settings, **flags))
    return time.perf_counter() - t0


def _sample_multiple(run_dir: Path, cfg: SweepConfig, prep_table: pd.DataFrame, ids: np.ndarray, m_max: int,
                     out: Path, seed: int) -> Path:
    """``m_max`` synthetic volumes per training participant, with that participant's class (its sex, and its
    age for an age-binned run): the participants' rows repeated m_max times as a ``--match`` table."""
    from neurodit.data.cohort import write_participants
    from neurodit.generators import sample

    rows = prep_table[prep_table["participant_id"].astype(str).isin(set(ids))]
    rows = rows.drop_duplicates("participant_id")[["participant_id", "sex", "age"]]
    match = pd.concat([rows.assign(session_id=f"rep{r}") for r in range(m_max)], ignore_index=True)
    write_participants(match, out.parent / f"{out.name}-match.tsv")
    return sample(run_dir, None, out, match=out.parent / f"{out.name}-match.tsv", steps=cfg.sample_steps,
                  guidance=cfg.guidance, seed=seed, overwrite=True)


def _check_fitted_on(run_dir: Path, ids: np.ndarray) -> None:
    """The run folder's own record of its training participants must be exactly ``ids``."""
    from neurodit.data.leakage import run_training_set

    got = run_training_set(run_dir)
    if got is None or set(got.ids) != {str(i) for i in ids}:
        raise NeuroditError("the per-fraction generator was not fitted on exactly its fraction's participants",
                            run_dir)


def _augment(r: _Fits, source: LabelledSet, prep_dir: Path, prep_table: pd.DataFrame, tmp: Path,
             fits: dict[str, dict]) -> None:
    from neurodit.downstream import load_labelled

    cfg, d = r.cfg, r.ds
    m_max = max(cfg.synthetic_multiples)
    for k in range(d.seeds):
        seed = d.seed + k
        for fold, (tr, te) in enumerate(grouped_folds(source.labels, source.groups, d.folds, seed, source.name)):
            pool = source.subset(tr)
            test = source.subset(te)
            subsets = nested_fractions(pool.labels, pool.groups, cfg.real_fractions, seed)
            for fi, (frac, ids) in enumerate(subsets.items()):
                part = pool.subset(rows_of(pool, ids))
                fit_i, val_i = grouped_holdout(part.labels, part.groups, d.val_fraction, seed,
                                               f"{source.name} (seed {seed}, fold {fold}, fraction {frac:g})")
                train, val = part.subset(fit_i), part.subset(val_i)
                init_seed = 1000 * seed + 100 * fi + fold + 1
                base = {"setting": "augment", "real_fraction": frac, "seed": seed, "fold": fold}
                model, fit = r.fit(train, val, init_seed)
                r.test(model, fit, test, {**base, "generator": "real", "multiple": 0}, train, val)
                if m_max == 0:
                    continue
                train_ids = np.unique(train.groups)
                counts = {c: int((train.labels[np.unique(train.groups, return_index=True)[1]] == c).sum())
                          for c in (0, 1)}
                for g in cfg.generators:
                    if frac not in cfg.fractions_of(g):
                        continue
                    run_dir = tmp / "generators" / g / f"s{seed}-f{fold}-r{frac:g}"
                    work = tmp / "work" / g
                    work.mkdir(parents=True, exist_ok=True)
                    secs = _fit_generator(g, cfg, prep_dir, train_ids, run_dir, work, seed)
                    _check_fitted_on(run_dir, train_ids)
                    syn_dir = _sample_multiple(run_dir, cfg, prep_table, train_ids, m_max, work / "syn", seed)
                    syn = load_labelled(syn_dir, "sex", d.shape, synthetic=None)
                    info = fits.setdefault(g, {"fractions": list(cfg.fractions_of(g)),
                                               "settings": cfg.generator_settings.get(g, {}), "n_fits": 0,
                                               "seconds": 0.0})
                    info["n_fits"] += 1
                    info["seconds"] = round(info["seconds"] + secs, 2)
                    if not cfg.keep_generator_models:
                        for name in PRUNE:
                            shutil.rmtree(run_dir / name, ignore_errors=True)
                    for m in (m for m in cfg.synthetic_multiples if m > 0):
                        # a participant's sessions count once: m x participants per class (one volume each)
                        part_syn = syn.subset(first_per_class(syn.labels, {c: m * n for c, n in counts.items()}))
                        model, fit = r.fit(train.plus(part_syn), val, init_seed)
                        r.test(model, fit, test, {**base, "generator": g, "multiple": m}, train, val,
                               n_syn=len(part_syn.labels))
                    shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------- transfer
def _slug(name: str) -> str:
    """A backbone name as a file-name part: ``real+synthetic[dit] (sex+age)`` -> ``real_synthetic-dit-sex_age``."""
    out = name.replace("+", "_").replace(" (", "-").replace("[", "-")
    return out.replace(")", "").replace("]", "")


def _backbones(r: _Fits, source: LabelledSet, synthetic: dict[str, LabelledSet], seed: int,
               models_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The seed's source backbones on every real source participant (+ each synthetic cohort)."""
    from safetensors.torch import save_file

    d = r.ds
    fit_i, val_i = grouped_holdout(source.labels, source.groups, d.val_fraction, seed, f"{source.name} (seed {seed})")
    train, val = source.subset(fit_i), source.subset(val_i)
    data = {"real": train, **{f"real+synthetic[{n}]": train.plus(s) for n, s in synthetic.items()}}
    states = {}
    for name, (base, task) in r.cfg.backbone_names(synthetic).items():
        sex_age = task == "sex+age"
        model, fit = r.fit(data[base], val, 1000 * seed + 999, sex_age=sex_age)
        r.progress(f"backbone {name} ({task}) seed {seed}: best epoch {fit.best_epoch}/{fit.epochs_run}")
        states[name] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        save_file({k: v.contiguous() for k, v in states[name].items()},
                  str(models_dir / f"backbone-{_slug(name)}-seed{seed}.safetensors"))
    return states


def _transfer(r: _Fits, source: LabelledSet, target: LabelledSet, synthetic: dict[str, LabelledSet],
              tmp: Path) -> None:
    cfg, d = r.cfg, r.ds
    (tmp / "models").mkdir(exist_ok=True)
    for k in range(d.seeds):
        seed = d.seed + k
        states = _backbones(r, source, synthetic, seed, tmp / "models")
        for fold, (tr, te) in enumerate(grouped_folds(target.labels, target.groups, d.folds, seed, target.name)):
            pool, test = target.subset(tr), target.subset(te)
            for fi, (frac, ids) in enumerate(nested_fractions(pool.labels, pool.groups, cfg.target_fractions,
                                                              seed).items()):
                part = pool.subset(rows_of(pool, ids))
                fit_i, val_i = grouped_holdout(part.labels, part.groups, d.val_fraction, seed,
                                               f"{target.name} (seed {seed}, fold {fold}, fraction {frac:g})")
                train, val = part.subset(fit_i), part.subset(val_i)
                init_seed = 1000 * seed + 500 + 10 * fi + fold
                base = {"setting": "transfer", "target_fraction": frac, "seed": seed, "fold": fold}
                model, fit = r.fit(train, val, init_seed)
                r.test(model, fit, test, {**base, "backbone": "scratch", "mode": "scratch"}, train, val)
                for name, state in states.items():
                    for mode in cfg.modes:
                        model, fit = r.fit(train, val, init_seed, state=state, frozen=mode == "probe")
                        r.test(model, fit, test, {**base, "backbone": name, "mode": mode}, train, val)


# ------------------------------------------------------------------------------------- results
def _cells(runs: pd.DataFrame, keys: list[str], n_col: str) -> list[dict[str, Any]]:
    out = []
    for key, sub in runs.groupby(keys, sort=False):
        sub = sub.sort_values(["seed", "fold"])
        out.append({**{k: v.item() if hasattr(v, "item") else v for k, v in zip(keys, key, strict=True)}, n_col: round(float(sub["n_train"].mean()), 1),
                    "n_synthetic": round(float(sub["n_synthetic"].mean()), 1), "n_runs": len(sub),
                    "metrics": {m: summarize(sub[m].to_numpy()) for m in METRICS}})
    return out


def _paired(runs: pd.DataFrame, arm: dict, base: dict, cfg: SweepConfig, subject: str) -> dict[str, Any] | None:
    def pick(sel: dict) -> pd.DataFrame:
        keep = np.ones(len(runs), bool)
        for k, v in sel.items():
            keep &= (runs[k] == v).to_numpy()
        return runs[keep].sort_values(["seed", "fold"])

    a, b = pick(arm), pick(base)
    if a.empty or b.empty:
        return None
    if not (a[["seed", "fold"]].to_numpy() == b[["seed", "fold"]].to_numpy()).all():
        raise AssertionError("unpaired runs")  # the same (seed, fold) in both: a bug if not
    ratio = float((a["n_test"] / a["n_train"]).mean())
    per = {m: paired_comparison(a[m].to_numpy(), b[m].to_numpy(), n_boot=cfg.downstream.n_boot,
                                seed=cfg.downstream.seed, test_train_ratio=ratio) for m in METRICS}
    outcome, sentence = verdict(per["balanced_accuracy"], subject=subject)
    return {"metrics": per, "outcome": outcome, "verdict": sentence}


def _curve_line(what: str, rows: list[dict[str, Any]], n_key: str) -> str:
    """One line per curve: at which sizes it helped, hurt, leaned one way (the bootstrap CI excludes 0 but
    the Wilcoxon test does not agree: too few paired runs to call it) or showed no clear effect."""
    def fmt(c: dict) -> str:
        p = c["metrics"]["balanced_accuracy"]
        lo, hi = p["ci95"]
        return f"{c[n_key]:.0f} ({signed(p['mean_diff'], 3)}, 95% CI {signed(lo, 3)} to {signed(hi, 3)})"

    def kind(c: dict) -> str:
        lo, hi = c["metrics"]["balanced_accuracy"]["ci95"]
        if c["outcome"] != "no clear effect":
            return c["outcome"]
        return "leaned up (CI > 0, Wilcoxon p >= 0.05)" if lo > 0 else \
            "leaned down (CI < 0, Wilcoxon p >= 0.05)" if hi < 0 else "no clear effect"

    parts = []
    for outcome in ("helped", "hurt", "leaned up (CI > 0, Wilcoxon p >= 0.05)",
                    "leaned down (CI < 0, Wilcoxon p >= 0.05)", "no clear effect"):
        got = [fmt(c) for c in rows if kind(c) == outcome]
        if got:
            parts.append(f"{outcome} at " + ", ".join(got))
    return f"{what}: " + "; ".join(parts) if parts else f"{what}: no runs"


def rebuild_results(sweep_dir: str | Path) -> Path:
    """Recompute ``results.json`` and the figures of SWEEP_DIR from its ``runs.csv`` and saved config (the
    models are not retrained): for a sweep written before a change to the summaries or verdicts."""
    from neurodit.config import from_dict
    from neurodit.downstream.plots import plot_curves

    sweep_dir = Path(sweep_dir)
    old = read_results(sweep_dir)
    cfg = from_dict(SweepConfig, old["config"])
    runs = pd.read_csv(sweep_dir / "runs.csv")
    backbones = old.get("transfer", {}).get("backbones", {})
    new = build_results(runs, cfg, old["data"], old.get("augment", {}).get("fits", {}), backbones,
                        old["timing"]["seconds"])
    write_json(sweep_dir / RESULTS_FILE, new)
    for name in FIGURES:
        if name in new:
            plot_curves(new, name, sweep_dir / f"{name}.png")
    return sweep_dir


def build_results(runs: pd.DataFrame, cfg: SweepConfig, data: dict, fits: dict, backbones: dict,
                  seconds: float) -> dict[str, Any]:
    """The ``results.json`` content (schema in the module docstring)."""
    out: dict[str, Any] = {"schema": SCHEMA, "config": to_dict(cfg), "data": data,
                           "verdicts": {"augment": [], "transfer": [], "probe_vs_finetune": None}}
    aug = runs[runs["setting"] == "augment"] if len(runs) else runs
    if len(aug):  # one runs table for both settings: the other's columns are NaN, so ints became floats
        aug = aug.astype({"multiple": int})
    if len(aug):
        cells = _cells(aug, ["generator", "real_fraction", "multiple"], "n_real")
        n_of = {c["real_fraction"]: c["n_real"] for c in cells if c["generator"] == "real"}
        comps = []
        for g in cfg.generators:
            for m in (m for m in cfg.synthetic_multiples if m > 0):
                for f in cfg.fractions_of(g):
                    c = _paired(aug, {"generator": g, "real_fraction": f, "multiple": m},
                                {"generator": "real", "real_fraction": f, "multiple": 0}, cfg,
                                f"with {n_of[f]:g} real subjects, {m}x {g} synthetic data")
                    if c:
                        comps.append({"generator": g, "real_fraction": f, "multiple": m, "n_real": n_of[f], **c})
                line = [c for c in comps if c["generator"] == g and c["multiple"] == m]
                out["verdicts"]["augment"].append(_curve_line(f"{m}x {g} synthetic (sex, by real subjects)", line,
                                                              "n_real"))
        out["augment"] = {"cells": cells, "comparisons": comps, "fits": fits}
    tra = runs[runs["setting"] == "transfer"] if len(runs) else runs
    if len(tra):
        cells = _cells(tra, ["backbone", "mode", "target_fraction"], "n_target")
        n_of = {c["target_fraction"]: c["n_target"] for c in cells if c["backbone"] == "scratch"}
        # backbone -> (base, task), from the records (older results name one task in the config only)
        info = {b: (v.get("base", b), v.get("pretrain", cfg.pretrain[0])) for b, v in backbones.items()}
        first = cfg.pretrain[0]
        questions = []  # (question, arm, baseline)
        for b, (base, _task) in info.items():
            if base == "real":
                for mode in cfg.modes:
                    questions.append((f"{b} backbone ({mode}) vs scratch", {"backbone": b, "mode": mode},
                                      {"backbone": "scratch"}))
        for b, (base, task) in info.items():
            real = next(x for x, (bb, tt) in info.items() if bb == "real" and tt == task)
            if base != "real":
                for mode in cfg.modes:
                    questions.append((f"{b} backbone vs {real} ({mode})", {"backbone": b, "mode": mode},
                                      {"backbone": real, "mode": mode}))
            if task != first:
                same = next(x for x, (bb, tt) in info.items() if bb == base and tt == first)
                for mode in cfg.modes:
                    questions.append((f"{b} backbone vs {same} ({mode})", {"backbone": b, "mode": mode},
                                      {"backbone": same, "mode": mode}))
        if set(MODES) <= set(cfg.modes):
            for b in info:
                questions.append((f"{b} backbone: fine-tune vs linear probe", {"backbone": b, "mode": "finetune"},
                                  {"backbone": b, "mode": "probe"}))
        comps = []
        for q, arm, base in questions:
            rows = []
            for f in cfg.target_fractions:
                c = _paired(tra, {**arm, "target_fraction": f}, {**base, "target_fraction": f}, cfg,
                            f"{q}, {n_of[f]:g} target subjects")
                if c:
                    rows.append({"question": q, "arm": arm, "baseline": base, "target_fraction": f,
                                 "n_target": n_of[f], **c})
            comps += rows
            out["verdicts"]["transfer"].append(_curve_line(f"{q} (AD vs CN, by target subjects)", rows, "n_target"))
        probe = [v for v in out["verdicts"]["transfer"] if "fine-tune vs linear probe" in v]
        out["verdicts"]["probe_vs_finetune"] = " ".join(probe) if probe else None
        out["transfer"] = {"cells": cells, "comparisons": comps, "backbones": backbones}
    out["timing"] = {"seconds": round(seconds, 2), "models_trained": int(len(runs))}
    return out


def read_results(sweep_dir: str | Path) -> dict[str, Any]:
    """``SWEEP_DIR/results.json`` (schema ``neurodit.sweep/1``); NeuroditError naming the file if not."""
    from neurodit.io import read_schema_json

    return read_schema_json(Path(sweep_dir) / RESULTS_FILE, SCHEMA, "neurodit sweep", ("config", "verdicts"))


def is_sweep_folder(folder: str | Path) -> bool:
    """Whether ``folder/results.json`` is a sweep's (and not a downstream experiment's): by its schema."""
    import json

    try:
        return json.loads((Path(folder) / RESULTS_FILE).read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def result_figures(sweep_dir: str | Path) -> dict[str, Path]:
    """name -> path of the sweep's figures that exist."""
    return {n: Path(sweep_dir) / f"{n}.png" for n in FIGURES if (Path(sweep_dir) / f"{n}.png").is_file()}


# ------------------------------------------------------------------------------------- entry point
def run_sweep(source_prep: str | Path, out: str | Path, *, target: str | Path | None = None,
              synthetic: dict[str, str | Path] | None = None, cfg: SweepConfig | None = None,
              overwrite: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Run the augment and transfer sweeps (module docstring) and write SWEEP_DIR ``out``.

    Args:
        source_prep: the SOURCE cohort as a PREP_DIR (``neurodit prepare``; sex labels, ages for
            ``sex+age``): the generators are refitted on its subsets, the classifiers see its volumes.
        target: TARGET_DIR cohort folder (diagnosis labels); needed when ``target_fractions`` is not empty.
        synthetic: {name: SYN_DIR}: cohorts of generators trained on the source, for the transfer
            backbones (``real+synthetic[name]``); refused when they copy source participants.
    """
    from neurodit.downstream import labelled_from_prepared, load_labelled
    from neurodit.downstream.experiment import auto_threads
    from neurodit.generators.registry import get_generator

    cfg = cfg or SweepConfig()
    d = cfg.downstream
    d.shape = tuple(int(s) for s in d.shape)
    for g in cfg.generators:
        get_generator(g)  # unknown names fail before anything runs
    if cfg.target_fractions and target is None:
        raise NeuroditError("the transfer sweep needs a TARGET cohort (--target), or no --target-fraction")
    progress = progress or (lambda msg: None)
    source = labelled_from_prepared(source_prep, "sex", d.shape)
    if "sex+age" in cfg.pretrain and not np.isfinite(source.age_or_nan()).any():
        raise NeuroditError("pretrain sex+age needs an 'age' column", Path(source_prep) / "participants.tsv")
    from neurodit.data.prepare import load_prepared

    prep_table = load_prepared(source_prep).table
    tgt = load_labelled(target, "diagnosis", d.shape, synthetic=False, include_mci=d.include_mci) \
        if cfg.target_fractions else None
    syn = {n: load_labelled(p, "sex", d.shape, synthetic=None) for n, p in (synthetic or {}).items()}
    audits = {n: copy_audit(s, source, Path(synthetic[n]) / "participants.tsv") for n, s in syn.items()}
    backbones = {}
    for name, (base, task) in cfg.backbone_names(syn).items():
        n = base[len("real+synthetic["):-1] if base != "real" else None
        backbones[name] = {"base": base, "pretrain": task, "n_volumes": len(source.labels) + (len(syn[n].labels) if n else 0),
                           **({"copy_audit": audits[n], "folder": str(Path(synthetic[n]).resolve())} if n else {})}
    prev = torch.get_num_threads()
    torch.set_num_threads(d.threads if d.threads > 0 else auto_threads(d))
    t0 = time.perf_counter()
    r = _Fits(cfg, progress)
    fits: dict[str, dict] = {}
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            if cfg.generators and cfg.real_fractions:
                _augment(r, source, Path(source_prep), prep_table, tmp, fits)
            if tgt is not None:
                _transfer(r, source, tgt, syn, tmp)
            shutil.rmtree(tmp / "work", ignore_errors=True)
            runs = pd.DataFrame(r.runs)
            data = {"source": source.summary(), **({"target": tgt.summary()} if tgt is not None else {}),
                    **{f"synthetic[{n}]": s.summary() for n, s in syn.items()}}
            results = build_results(runs, cfg, data, fits, backbones, time.perf_counter() - t0)
            write_json(tmp / RESULTS_FILE, results)
            atomic_write_text(tmp / "runs.csv", runs.to_csv(index=False, float_format="%.6g"))
            from neurodit.downstream.plots import plot_curves

            for name in FIGURES:
                if name in results:
                    plot_curves(results, name, tmp / f"{name}.png")
            write_run_info(tmp, to_dict(cfg), d.seed, stage="sweep",
                           inputs={"source": str(Path(source_prep).resolve()),
                                   "target": None if target is None else str(Path(target).resolve()),
                                   "synthetic": {n: str(Path(p).resolve()) for n, p in (synthetic or {}).items()}},
                           timing=results["timing"])
    finally:
        torch.set_num_threads(prev)
    return Path(out)


__all__ = ["FIGURES", "SCHEMA", "SweepConfig", "copy_audit", "first_per_class", "is_sweep_folder", "load_sweep_config", "nested_fractions",
           "read_results",
           "rebuild_results", "result_figures", "rows_of", "run_sweep"]
