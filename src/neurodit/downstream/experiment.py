"""The downstream utility experiment: sex classifier with and without synthetic data, transfer to AD vs CN.

Design (Chattopadhyay et al. 2025 test the utility of synthetic MD maps this way; the synthetic-only
arm, "train synthetic, test real", is added here):

Source task ``sex`` (F=0, M=1) on the real SOURCE cohort, arms
  - ``sex/real``: real training participants only;
  - ``sex/real+synthetic``: the same real participants plus every synthetic volume;
  - ``sex/synthetic``: synthetic volumes only (train-synthetic-test-real).
Target task ``diagnosis`` (CN=0, AD=1) on the real TARGET cohort, arms
  - ``ad/scratch``: random initialisation;
  - ``ad/init-real``: backbone copied from the seed's *full* ``sex/real`` model;
  - ``ad/init-real+synthetic``: backbone copied from the seed's full ``sex/real+synthetic`` model.
  MCI is dropped by default; with ``include_mci`` it joins the positive class ("CN vs impaired").
  The head (last linear layer) is always new; ``freeze_backbone`` trains the head only.

Which source model initialises the target: for each seed, one extra source model per arm is trained
on *all* real source participants (plus all synthetic volumes for ``real+synthetic``), with the same
participant-grouped validation split for early stopping; the cross-validated source models are used
for the source metrics only. These full models are saved as ``models/source-<arm>-seed<k>.safetensors``.

Splits (paired across arms): for each seed k (``seed + k``), ``StratifiedGroupKFold`` over real
participants; within every training fold a participant-grouped, stratified validation hold-out
(``val_fraction``) is used for early stopping. Test folds are always real held-out participants.
Synthetic volumes are only ever added to training data: the ``real+synthetic`` arm validates on the
same real validation participants as ``real``; the ``synthetic`` arm validates on a held-out part of
the synthetic set (no real data touches its training or model selection). The model of every arm of a
(fold, seed) starts from the same random initialisation, so arms differ only in what they are trained
on. Metrics are computed per participant (probabilities averaged over a participant's sessions).

Several synthetic cohorts (``synthetic={name: cohort}``, e.g. one per generator): the arms that see
synthetic data (``config.SYNTHETIC_ARMS``) run once per cohort, named ``sex/real+synthetic[name]``,
``sex/synthetic[name]``, ``ad/init-real+synthetic[name]``; the real-only arms (``sex/real``,
``ad/scratch``, ``ad/init-real`` and the full ``sex/real`` source model) are trained once. Folds,
validation splits and initialisations depend on the real cohort and the seed only, so every cohort's
arms are paired with each other and with the real-only arms run by run. Comparisons and verdicts are
made per cohort (each arm against its baseline, as for one cohort). One cohort given as a
``LabelledSet`` keeps the names without ``[name]``.

``DownstreamConfig.arms`` restricts the run to some arms (empty = all; base names, so for every
cohort); without any ``ad/*`` arm no TARGET cohort is needed and no full source models are trained.

Caveat: if the generator was trained on SOURCE participants that are in a test fold, synthetic
volumes can carry information about them (memorisation); train the generator on a separate split or
check the memorisation metrics of ``neurodit.metrics``.

``DS_DIR`` (written atomically):
  - ``results.json``::

      {"schema": "neurodit.downstream/2",   (/1: the same without named cohorts and "cohort" keys)
       "config": {...DownstreamConfig...},
       "data": {"source"|"target"|"synthetic": SUMMARY},  (target only when AD vs CN arms ran; named
                cohorts: "synthetic": {name: SUMMARY}) where SUMMARY = {"n_volumes", "n_participants",
                "classes": [neg, pos], "n_per_class": [n0, n1] (participants), "dropped": {reason: n}}
       "source_models": "<which source model initialises the target>",
       "arms": {"sex/real": {"task": "sex", "cohort": null | name, "description": str, "n_runs": R,
                 "metrics": {"balanced_accuracy"|"f1"|"roc_auc"|"accuracy":
                             {"mean", "sd", "ci95": [lo, hi], "n", "values": [R floats]}}}, ...},
       "comparisons": [{"name", "task", "arm", "baseline", "cohort" (null | name), "question",
                        "metrics": {metric: {"mean_diff", "sd_diff", "ci95", "p_bootstrap", "p_wilcoxon",
                                             "p_corrected_t", "n_pairs", "wins", "losses", "ties"}},
                        "outcome": "helped"|"hurt"|"no clear effect",   # balanced accuracy: helped/hurt
                                       # need the bootstrap CI to exclude 0 and Wilcoxon p < 0.05
                        "verdict": "synthetic data ... : +0.010 balanced accuracy, 95% CI ... (...)"}],
       "verdict": {"synthetic_for_sex": str, "synthetic_for_transfer": str, "summary": str},
                  (several cohorts: each cohort's verdict sentence, joined by "; ")
       "timing": {"seconds": float, "models_trained": int}}

    Values ``values`` are in run order (seed-major, then fold), identical across arms of a task, so
    ``values[i]`` of two arms are a pair. ``ci95`` of an arm is the Student-t CI of the mean over runs;
    ``ci95`` of a comparison is the percentile bootstrap CI of the mean paired difference. Arm names
    split into (base, cohort) with :func:`neurodit.downstream.config.split_arm`.
  - ``runs.csv``: one row per task/arm/seed/fold: counts (participants), synthetic volumes used,
    best/run epochs, seconds and the four metrics.
  - ``predictions.csv``: one row per test participant per run: task, arm, seed, fold,
    participant_id, label, p_positive.
  - ``models/source-<arm>[-<cohort>]-seed<k>.safetensors``: the full source models (AD vs CN arms only).
  - ``arms.png`` (mean and 95% CI of balanced accuracy and ROC-AUC per arm, runs as dots),
    ``roc.png`` (ROC curves of test predictions pooled over folds and seeds), ``run.json``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurodit.config import to_dict
from neurodit.downstream import nets
from neurodit.downstream.config import TARGET_ARMS, DownstreamConfig, arm_name, check_cohort_name, split_arm
from neurodit.downstream.labelled import LabelledSet
from neurodit.downstream.results import build_results
from neurodit.downstream.splits import grouped_folds, grouped_holdout
from neurodit.downstream.stats import classification_metrics
from neurodit.downstream.train import fit_classifier, predict_proba
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_text, seed_everything, write_json, write_run_info
from neurodit.models.fit import bf16_supported


# ------------------------------------------------------------------------------------------- core
def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NeuroditError("device 'cuda' requested but no CUDA GPU is available")
    if name not in ("cpu", "cuda"):
        raise NeuroditError(f"unknown device '{name}' (auto, cpu or cuda)")
    return torch.device(name)


def auto_threads(cfg: DownstreamConfig) -> int:
    """CPU threads for torch: 1 for the small CNN on CPU, else the available cores (at most 8).

    Measured on a 2-core machine shared with other jobs (load ~10): SmallCNN training at 32^3 took
    5.7 ms per volume with 1 thread and 35 ms with 2 (thread oversubscription); the small convolutions
    gain little from threads even when idle (0.88 ms per volume with 2 threads). DenseNet/ResNet on CPU
    have larger convolutions and use the cores.
    """
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cfg.arch == "small" and device_of(cfg.device).type == "cpu":
        return 1
    return max(1, min(n_cores, 8))


def fit_model(cfg: DownstreamConfig, device: torch.device, train: LabelledSet, val: LabelledSet, init_seed: int,
              *, state: dict[str, torch.Tensor] | None = None, frozen: bool = False,
              sex_age: bool = False) -> tuple[torch.nn.Module, object]:
    """One classifier of ``cfg.arch`` seeded by ``init_seed`` (every arm of one (fold, seed) starts from the
    same weights, so arms differ only in their data), its backbone copied from ``state`` when given (head
    new; ``frozen``: trained head only, the linear probe), trained on ``train`` with early stopping on
    ``val``; ``sex_age``: three outputs, sex and age together (``train.fit_sex_age``). The experiment's,
    the sweep's and the effect measure's one training routine. Returns (model, fit result)."""
    from neurodit.downstream.train import fit_sex_age

    seed_everything(init_seed)
    model = nets.build_classifier(cfg.arch, n_classes=3 if sex_age else 2)
    if state is not None:
        nets.transfer_backbone(model, state)
        if frozen:
            nets.freeze_backbone(model)
    common = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                  patience=cfg.patience, augment=cfg.augment, amp=cfg.amp, device=device, seed=init_seed)
    if sex_age:
        fit = fit_sex_age(model, train.volumes, train.labels, train.age_or_nan(), val.volumes, val.labels,
                          val.age_or_nan(), **common)
    else:
        fit = fit_classifier(model, train.volumes, train.labels, val.volumes, val.labels,
                             frozen_backbone=frozen and state is not None, **common)
    return model, fit


def per_participant(groups: np.ndarray, labels: np.ndarray, p: np.ndarray):
    """Average the positive-class probability over each participant's sessions."""
    df = pd.DataFrame({"g": groups, "y": labels, "p": p}).groupby("g", sort=True).agg(y=("y", "first"),
                                                                                       p=("p", "mean"))
    return df.index.to_numpy(), df["y"].to_numpy(int), df["p"].to_numpy(float)


class _Runner:
    """Holds the config and accumulates runs, predictions and counts while the experiment runs."""

    def __init__(self, cfg: DownstreamConfig, progress: Callable[[str], None] | None):
        self.cfg = cfg
        self.device = device_of(cfg.device)
        self.progress = progress or (lambda msg: None)
        self.runs: list[dict[str, object]] = []
        self.preds: list[pd.DataFrame] = []
        self.n_models = 0

    def fit(self, train: LabelledSet, val: LabelledSet, init_seed: int,
            source_state: dict[str, torch.Tensor] | None = None) -> tuple[torch.nn.Module, object]:
        # same initial weights for every arm of one (fold, seed), every synthetic cohort's arms included
        model, fit = fit_model(self.cfg, self.device, train, val, init_seed, state=source_state,
                               frozen=self.cfg.freeze_backbone)
        self.n_models += 1
        return model, fit

    def evaluate(self, model, fit, test: LabelledSet, *, task: str, arm: str, seed: int, fold: int,
                 train: LabelledSet, val: LabelledSet, n_syn: int) -> None:
        p = predict_proba(model, test.volumes, batch_size=2 * self.cfg.batch_size, device=self.device,
                          amp=self.cfg.amp and bf16_supported(self.device))[:, 1]
        ids, y, pp = per_participant(test.groups, test.labels, p)
        m = classification_metrics(y, pp)
        self.runs.append({"task": task, "arm": arm, "seed": seed, "fold": fold,
                          "n_train": int(len(np.unique(train.groups))), "n_val": int(len(np.unique(val.groups))),
                          "n_test": int(len(ids)), "n_train_synthetic": int(n_syn),
                          "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run,
                          "seconds": round(fit.seconds, 3), **m})
        self.preds.append(pd.DataFrame({"task": task, "arm": arm, "seed": seed, "fold": fold,
                                        "participant_id": ids, "label": y, "p_positive": pp}))
        self.progress(f"{arm:24s} seed {seed} fold {fold}: balanced accuracy {m['balanced_accuracy']:.3f}, "
                      f"AUC {m['roc_auc']:.3f} (best epoch {fit.best_epoch}/{fit.epochs_run}, {fit.seconds:.1f} s)")


def _source_arms(r: _Runner, source: LabelledSet, cohorts: dict[str | None, LabelledSet], seed: int, fold: int,
                 train_idx: np.ndarray, syn_splits: dict[str | None, tuple[np.ndarray, np.ndarray]] | None,
                 test_idx: np.ndarray | None) -> dict[str, dict[str, torch.Tensor]]:
    """Train the source arms on ``train_idx`` (test on ``test_idx`` unless None); return their weights by arm.

    ``sex/real`` is trained once whatever the number of cohorts; each cohort adds its own
    ``sex/real+synthetic`` (and, cross-validated, ``sex/synthetic``) arm. Every cohort's arms see the same
    real training and validation participants and start from the same initialisation: the folds and the
    validation split come from the source and the seed only, and ``init_seed`` from (seed, fold) only,
    so the cohorts' arms of one (seed, fold) are paired with each other and with ``sex/real``."""
    train_all = source.subset(train_idx)
    fit_i, val_i = grouped_holdout(train_all.labels, train_all.groups, r.cfg.val_fraction, seed,
                                   f"{source.name} (seed {seed}, fold {fold})")
    train, val = train_all.subset(fit_i), train_all.subset(val_i)
    init_seed = 1000 * seed + fold + 1
    arms: list[tuple[str, LabelledSet, LabelledSet, int]] = [("sex/real", train, val, 0)]
    for name, syn in cohorts.items():
        arms.append((arm_name("sex/real+synthetic", name), train.plus(syn), val, len(syn.labels)))
        if test_idx is not None and syn_splits is not None:
            syn_tr, syn_va = syn.subset(syn_splits[name][0]), syn.subset(syn_splits[name][1])
            arms.append((arm_name("sex/synthetic", name), syn_tr, syn_va, len(syn_tr.labels)))
    if test_idx is not None:  # cross-validated source models: only the arms asked for
        arms = [a for a in arms if split_arm(a[0])[0] in r.cfg.wanted()]
    states = {}
    for arm, tr, va, n_syn in arms:
        model, fit = r.fit(tr, va, init_seed)
        if test_idx is not None:
            r.evaluate(model, fit, source.subset(test_idx), task="sex", arm=arm, seed=seed, fold=fold,
                       train=tr, val=va, n_syn=n_syn)
        else:
            r.progress(f"{arm:24s} seed {seed} full model for transfer (best epoch {fit.best_epoch}/"
                       f"{fit.epochs_run}, {fit.seconds:.1f} s)")
        states[arm] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return states


def _cohorts(synthetic: LabelledSet | dict[str, LabelledSet] | None) -> dict[str | None, LabelledSet]:
    """The synthetic cohorts by name; one unnamed cohort (key None) keeps the arm names without ``[name]``."""
    if synthetic is None:
        return {}
    if isinstance(synthetic, LabelledSet):
        return {None: synthetic}
    if not synthetic:
        raise NeuroditError("no synthetic cohort given (an empty {name: cohort} mapping); pass None instead")
    return {check_cohort_name(name): syn for name, syn in synthetic.items()}


def run_experiment(source: LabelledSet, target: LabelledSet | None, out: str | Path,
                   synthetic: LabelledSet | dict[str, LabelledSet] | None = None,
                   config: DownstreamConfig | None = None, *, overwrite: bool = False,
                   progress: Callable[[str], None] | None = None, inputs: dict[str, object] | None = None) -> Path:
    """Run every arm over ``folds`` x ``seeds`` and write ``DS_DIR`` (see the module docstring).

    Args:
        source: real source cohort, labels = sex (F=0, M=1).
        target: real target cohort, labels = diagnosis (CN=0, AD[/MCI]=1); None when ``config.arms``
            holds no target arm.
        synthetic: synthetic source volumes with sex labels: one cohort (the arms ``sex/real+synthetic``,
            ``sex/synthetic``, ``ad/init-real+synthetic``), several as {name: cohort} (those arms once per
            cohort, ``sex/real+synthetic[name]`` ..., the real-only arms trained once), or None (only the
            ``sex/real``, ``ad/scratch`` and ``ad/init-real`` arms run).
        config: :class:`DownstreamConfig`.
        inputs: extra provenance for ``run.json`` (e.g. input folders and grid).
    Returns:
        the output folder.
    """
    cfg = config or DownstreamConfig()
    cohorts = _cohorts(synthetic)
    run_target = _check_inputs(cfg, source, target, cohorts)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads if cfg.threads > 0 else auto_threads(cfg))
    t0 = time.perf_counter()
    r = _Runner(cfg, progress)
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            (tmp / "models").mkdir()
            ratios: dict[str, list[float]] = {"sex": [], "ad": []}
            for k in range(cfg.seeds):
                seed = cfg.seed + k
                ratios["sex"] += _source_task(r, source, cohorts, seed)
                if run_target:
                    # full source models: these initialise the target backbones of this seed
                    full = _source_arms(r, source, cohorts, seed, -1, np.arange(len(source.labels)), None, None)
                    _save_source_models(full, tmp / "models", seed)
                    ratios["ad"] += _target_task(r, target, full, seed)
            data = {"source": source.summary()}
            if run_target:
                data["target"] = target.summary()
            if None in cohorts:
                data["synthetic"] = cohorts[None].summary()
            elif cohorts:
                data["synthetic"] = {name: syn.summary() for name, syn in cohorts.items()}
            results = build_results(pd.DataFrame(r.runs), cfg, data, ratios, time.perf_counter() - t0, r.n_models,
                                    list(cohorts))
            _write_outputs(tmp, results, r, cfg, inputs or {})
    finally:
        torch.set_num_threads(prev_threads)
    return Path(out)


def _check_inputs(cfg: DownstreamConfig, source: LabelledSet, target: LabelledSet | None,
                  cohorts: dict[str | None, LabelledSet]) -> bool:
    """NeuroditError for inputs the run cannot use; returns whether the target (AD vs CN) arms run."""
    if cfg.arch not in nets.ARCHS:
        raise NeuroditError(f"unknown architecture '{cfg.arch}' (known: {', '.join(nets.ARCHS)})")
    run_target = any(a in TARGET_ARMS for a in cfg.wanted())
    if run_target and target is None:
        raise NeuroditError("the AD vs CN arms need a TARGET cohort (or leave them out with arms=...)")
    for ds in (source, target if run_target else None, *cohorts.values()):
        if ds is not None and min(ds.volumes.shape[1:]) < nets.MIN_SIDE[cfg.arch]:
            raise NeuroditError(f"{ds.name}: volumes of shape {ds.volumes.shape[1:]} are too small for "
                                f"{cfg.arch} (every side >= {nets.MIN_SIDE[cfg.arch]})")
    seen: dict[str, str] = {}  # participant id -> the cohort it is in: one id, one participant in DS_DIR
    for name, ds in [("source cohort", source)] + [(f"synthetic cohort '{n}'" if n else "synthetic cohort", c)
                                                   for n, c in cohorts.items()]:
        clash = sorted(set(ds.groups) & set(seen))
        if clash:
            raise NeuroditError(f"{ds.name}: participant ids also in the {seen[clash[0]]} ({clash[0]}, ...); "
                                "synthetic ids must be distinct from the source's and every other cohort's")
        seen.update(dict.fromkeys(ds.groups.tolist(), name))
    if cfg.seeds < 1:
        raise NeuroditError(f"--seeds must be at least 1, got {cfg.seeds}")
    return run_target


def _source_task(r: _Runner, source: LabelledSet, cohorts: dict[str | None, LabelledSet], seed: int) -> list[float]:
    """The source (sex) arms of one seed, cross-validated; returns the test/train participant ratio per fold."""
    syn_splits = {name: grouped_holdout(syn.labels, syn.groups, r.cfg.val_fraction, seed, f"{syn.name} (seed {seed})")
                  for name, syn in cohorts.items()}
    ratios = []
    for fold, (tr, te) in enumerate(grouped_folds(source.labels, source.groups, r.cfg.folds, seed, source.name)):
        ratios.append(len(np.unique(source.groups[te])) / len(np.unique(source.groups[tr])))
        _source_arms(r, source, cohorts, seed, fold, tr, syn_splits, te)
    return ratios


def _save_source_models(full: dict[str, dict[str, torch.Tensor]], folder: Path, seed: int) -> None:
    """``folder/source-<arm>-seed<seed>.safetensors`` for each full source model."""
    from safetensors.torch import save_file

    for arm, state in full.items():
        base, cohort = split_arm(arm)
        name = base.split("/")[1].replace("+", "_") + (f"-{cohort}" if cohort else "")
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"source-{name}-seed{seed}.safetensors"))


def _target_task(r: _Runner, target: LabelledSet, full: dict[str, dict[str, torch.Tensor]], seed: int) -> list[float]:
    """The target (AD vs CN) arms of one seed, cross-validated; arms share folds, validation split and head
    init. ``full``: the seed's full source models by arm. Returns the test/train participant ratio per fold."""
    ratios = []
    for fold, (tr, te) in enumerate(grouped_folds(target.labels, target.groups, r.cfg.folds, seed, target.name)):
        ratios.append(len(np.unique(target.groups[te])) / len(np.unique(target.groups[tr])))
        train_all = target.subset(tr)
        fit_i, val_i = grouped_holdout(train_all.labels, train_all.groups, r.cfg.val_fraction, seed,
                                       f"{target.name} (seed {seed}, fold {fold})")
        train, val, test = train_all.subset(fit_i), train_all.subset(val_i), target.subset(te)
        init_seed = 1000 * seed + 500 + fold
        plan = [("ad/scratch", None), ("ad/init-real", full["sex/real"])]
        plan += [(arm_name("ad/init-real+synthetic", split_arm(a)[1]), state) for a, state in full.items()
                 if split_arm(a)[0] == "sex/real+synthetic"]
        for arm, state in [p for p in plan if split_arm(p[0])[0] in r.cfg.wanted()]:
            model, fit = r.fit(train, val, init_seed, state)
            r.evaluate(model, fit, test, task="diagnosis", arm=arm, seed=seed, fold=fold, train=train, val=val,
                       n_syn=0)
    return ratios


def _write_outputs(tmp: Path, results: dict, r: _Runner, cfg: DownstreamConfig, inputs: dict[str, object]) -> None:
    """results.json, runs.csv, predictions.csv, the two figures and run.json into the output folder."""
    from neurodit.downstream.plots import plot_arms, plot_roc

    write_json(tmp / "results.json", results)
    atomic_write_text(tmp / "runs.csv", pd.DataFrame(r.runs).to_csv(index=False, float_format="%.6g"))
    preds = pd.concat(r.preds, ignore_index=True)
    buf = io.StringIO()
    preds.to_csv(buf, index=False, float_format="%.6g", quoting=csv.QUOTE_MINIMAL)
    atomic_write_text(tmp / "predictions.csv", buf.getvalue())
    plot_arms(results, tmp / "arms.png")
    plot_roc(preds, tmp / "roc.png")
    write_run_info(tmp, to_dict(cfg), cfg.seed, inputs=inputs, data=results["data"], timing=results["timing"])
