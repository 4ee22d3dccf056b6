"""``neurodit compare``, the stage: judge each input (synthetic cohort or RUN folder) against one real
held-out set and training set with one set of settings, and write CMP_DIR (schema and reader in
:mod:`neurodit.compare.schema`, rows in :mod:`neurodit.compare.rows`, table and figure in
:mod:`neurodit.compare.render`). Each row's EVAL_DIR is written by the evaluate stage's own writer
(:func:`neurodit.metrics.evaluate.write_evaluation`), its DS_DIR by :func:`neurodit.downstream.run_experiment`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.compare.render import comparison_figure, comparison_markdown
from neurodit.compare.rows import budget_and_cost, make_row, rank_rows, read_info
from neurodit.compare.schema import FIGURE_FILE, RESULT_FILE, SCHEMA, TABLE_FILE
from neurodit.data.maps import require_md
from neurodit.data.normalize import Normalization
from neurodit.defaults import SAMPLING
from neurodit.downstream.experiment import DownstreamConfig
from neurodit.errors import NeuroditError
from neurodit.io import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    seed_everything,
    write_json,
    write_run_info,
)
from neurodit.metrics.config import EvalConfig
from neurodit.run_folder import is_run_folder

COMPARE_ARMS = ("sex/real", "sex/real+synthetic")
DS_DIR_NAME = "downstream"  # the one DS_DIR inside CMP_DIR: every row's sex arms


def _default_downstream() -> DownstreamConfig:
    return DownstreamConfig(folds=3, seeds=2, arms=COMPARE_ARMS)


@dataclasses.dataclass
class CompareConfig:
    """Settings shared by every row of one comparison (saved in comparison.json and run.json)."""

    n: int = 100  # volumes sampled from each RUN input (balanced over its classes)
    seed: int = 0
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    downstream: DownstreamConfig = dataclasses.field(default_factory=_default_downstream)
    run_downstream: bool = True  # the sex arms per row (off: downstream null)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # input folder -> row label
    sample_steps: int = SAMPLING.steps  # RUN inputs: sampler steps, guidance, scheduler
    sample_guidance: float = SAMPLING.guidance
    sample_scheduler: str | None = None  # None: each run's own sampler (ddim for ddpm runs, euler for flow)
    # synthetic cohort folder -> an EVAL_DIR of it already written (``neurodit evaluate``): copied in as the
    # row's evaluation, not judged again, when its inputs and settings are this comparison's (_reusable)
    reuse_eval: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 2:
            raise NeuroditError(f"--n must be >= 2, got {self.n}")
        self.downstream.arms = tuple(self.downstream.arms) or COMPARE_ARMS
        if any(a.startswith("ad/") for a in self.downstream.arms):
            raise NeuroditError("compare runs the sex arms only (no TARGET cohort): drop the ad/* arms")


def compare_config(overrides: dict | None = None) -> CompareConfig:
    """:class:`CompareConfig` from its defaults (the compare-specific downstream defaults included) merged
    with nested ``overrides`` (e.g. ``{"eval": {"max_pairs": 200}}``); unknown keys raise NeuroditError."""
    from neurodit.config import deep_merge, from_dict, to_dict

    return from_dict(CompareConfig, deep_merge(to_dict(CompareConfig()), overrides or {}))


def _run_grid(run_dir: Path):
    """The grid a RUN samples on: its copy of the prepare grid (read without loading the model)."""
    from neurodit.data.grid import Grid

    return Grid.from_dict(read_json(run_dir / "prepare.json")["grid"])


def _sample_run(run_dir: Path, n: int, out: Path, cfg: CompareConfig) -> Path:
    """Draw ``n`` volumes (balanced over the run's classes) from RUN_DIR into the cohort folder ``out``.

    The one place compare reaches a generator: the generic interface (dit, ddpm3d, pca; the pca generator
    ignores the diffusion settings)."""
    from neurodit.generators import sample

    return sample(run_dir, n, out, steps=cfg.sample_steps, guidance=cfg.sample_guidance,
                  scheduler=cfg.sample_scheduler, seed=cfg.seed, progress=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "input"


def _load_on(folder: Path, grid) -> tuple[np.ndarray, object, bool]:
    """(volumes mm²/s on ``grid``, cohort, resampled?): as stored when the folder is already on ``grid``,
    else resampled by the data layer (a raw cohort on any grid, or mixed grids)."""
    from neurodit.data.cohort import load_volumes, read_cohort

    cohort = read_cohort(folder)
    require_md(cohort, "compare")
    try:
        vols, g = load_volumes(cohort, None)
    except NeuroditError:  # mixed grids inside the folder: resample every file (a bad file raises again)
        return load_volumes(cohort, grid)[0], cohort, True
    if g.same_as(grid):
        return vols, cohort, False
    return load_volumes(cohort, grid)[0], cohort, True


def _parse_inputs(inputs: list[Path], labels: dict[str, str]) -> list[dict]:
    """One dict per input (path, kind, grid, name, label), refusing unknown folders and mixed grids."""
    from neurodit.data.cohort import load_volumes, read_cohort

    if not inputs:
        raise NeuroditError("give at least one synthetic cohort or RUN folder to compare")
    by_path = {Path(k).resolve(): v for k, v in labels.items()}
    items, ref, ref_path, names = [], None, None, set()
    for p in map(Path, inputs):
        if not p.is_dir():
            raise NeuroditError("not a folder (give synthetic cohort or RUN folders)", p)
        if is_run_folder(p, finished=False):
            kind, grid, vols, table = "run", _run_grid(p), None, None
        elif (p / "participants.tsv").is_file():
            cohort = read_cohort(p)
            require_md(cohort, "compare")
            vols, grid = load_volumes(cohort, None)
            kind, table = "synthetic", cohort.table
        else:
            raise NeuroditError("neither a synthetic cohort (participants.tsv) nor a RUN folder "
                                "(prepare.json + model/)", p)
        if ref is None:
            ref, ref_path = grid, p
        elif not ref.same_as(grid):
            what = "shape" if tuple(grid.shape) != tuple(ref.shape) else "affine"
            raise NeuroditError(f"grid {what} differs from {ref_path} ({'x'.join(map(str, grid.shape))} vs "
                                f"{'x'.join(map(str, ref.shape))}): generators must be compared on one grid", p)
        label = by_path.pop(p.resolve(), None)
        name = base = _slug(p.name)
        k = 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        items.append({"path": p, "kind": kind, "grid": grid, "volumes": vols, "table": table, "name": name,
                      "label": label or p.name})
    if by_path:
        raise NeuroditError(f"--label-as names a folder that is not an input: {next(iter(by_path))}")
    return items


def _check_reuse(items: list[dict], reuse_eval: dict[str, str]) -> None:
    """NeuroditError when ``--reuse-eval`` names a folder that is not a synthetic input or no EVAL_DIR."""
    synthetic = {i["path"].resolve() for i in items if i["kind"] == "synthetic"}
    for syn, ev in reuse_eval.items():
        if Path(syn).resolve() not in synthetic:
            raise NeuroditError("--reuse-eval names a folder that is not a synthetic cohort input", syn)
        if not Path(ev).is_dir():
            raise NeuroditError("--reuse-eval: not an EVAL_DIR folder", ev)


def _floor(real: np.ndarray, train: np.ndarray, first_metrics: dict, cfg: EvalConfig) -> dict:
    """Real held-out vs real training: the C2ST of two real sets, and the floors every eval already has."""
    from neurodit.data.mask import support_mask
    from neurodit.metrics.families import c2st_family

    c2st = None
    if cfg.c2st:
        fam = c2st_family(real, train, None, support_mask(real, train), cfg)
        c2st = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")} for v, r in fam["views"].items()}
    feats = first_metrics.get("features") or {}
    rbf = first_metrics["mmd"]["rbf"]["floor"]
    return {"c2st": c2st, "msssim_real_real": first_metrics["msssim"]["real_real"]["mean"],
            "frechet": (feats.get("floor") or {}).get("frechet"),
            "mmd_rbf": {"mmd2": rbf["mmd2"], "p_value": rbf["p_value"]}}


# ------------------------------------------------------------------------------------------- entry
@dataclasses.dataclass
class _Reference:
    """The real sets every row is judged against, on the synthetic grid (mm²/s)."""

    real: str | Path  # folders as given
    train: str | Path
    r_vols: np.ndarray  # (N_r, D, H, W)
    t_vols: np.ndarray  # (N_t, D, H, W)
    r_table: Any  # cohort tables, rows aligned with the volumes
    t_table: Any
    resampled: dict[str, bool]  # {"real", "train"}: resampled onto the synthetic grid
    source: Any | None  # downstream source: the held-out participants with sex labels, model range


def _load_reference(real: str | Path, train: str | Path, grid, cfg: CompareConfig, norm: Normalization) -> _Reference:
    """REAL and TRAIN on ``grid``; NeuroditError when they share participants (before anything is written)."""
    from neurodit.downstream import labelled_from_table
    from neurodit.metrics.evaluate import check_disjoint, participant_ids

    r_vols, r_cohort, r_res = _load_on(Path(real), grid)
    t_vols, t_cohort, t_res = _load_on(Path(train), grid)
    check_disjoint(participant_ids(r_cohort.table), participant_ids(t_cohort.table), real)
    source = None
    if cfg.run_downstream:  # the real held-out participants with sex labels, model range
        source = labelled_from_table(r_cohort.table, norm.to_model(r_vols).astype(np.float32), "sex",
                                     name=str(Path(real) / "participants.tsv"), synthetic=False)
    return _Reference(real, train, r_vols, t_vols, r_cohort.table, t_cohort.table,
                      {"real": r_res, "train": t_res}, source)


def _synthetic_set(item: dict, tmp: Path, cfg: CompareConfig) -> tuple[Path, str, np.ndarray, Any, dict]:
    """(cohort folder, its path in comparison.json, volumes, table, the training run's run.json) of one
    input: a synthetic cohort as given, or ``cfg.n`` volumes sampled here from a RUN into ``syn-<name>``."""
    if item["kind"] == "run":
        from neurodit.data.cohort import load_volumes, read_cohort

        syn_dir = _sample_run(item["path"], cfg.n, tmp / f"syn-{item['name']}", cfg)
        cohort = read_cohort(syn_dir)
        return syn_dir, f"syn-{item['name']}", load_volumes(cohort, None)[0], cohort.table, \
            read_info(item["path"] / "run.json")
    conf = read_info(item["path"] / "run.json").get("config") or {}
    run_info = read_info(Path(conf["run_dir"]) / "run.json") if conf.get("run_dir") else {}
    return item["path"], str(item["path"]), item["volumes"], item["table"], run_info


# EvalConfig fields that change no number of a row: an evaluation differing only in them is reused
_REUSE_IGNORES = ("calibrate", "figures", "encoder_cache")


def _reusable(eval_dir: Path, syn_dir: Path, n_syn: int, ref: _Reference, grid, cfg: EvalConfig) -> str | None:
    """None when ``eval_dir`` judged ``syn_dir`` against this comparison's real and train folders, on
    ``grid``, with ``cfg`` (but :data:`_REUSE_IGNORES`), after its inputs were last written; else why not."""
    from neurodit.data.grid import Grid
    from neurodit.metrics.schema import METRICS_FILE, read_metrics

    try:
        m, conf = read_metrics(eval_dir), read_json(eval_dir / "run.json").get("config") or {}
    except NeuroditError as exc:
        return f"unreadable ({exc})"
    given = {"real": Path(ref.real), "synthetic": syn_dir, "train": Path(ref.train)}
    inputs = m.get("inputs") or {}
    if any(inputs.get(k) is None or Path(inputs[k]).resolve() != p.resolve() for k, p in given.items()):
        return "judged other folders"
    if ref.resampled["real"] or ref.resampled["train"] or not m.get("grid") \
            or not Grid.from_dict(m["grid"]).same_as(grid):
        return "another grid"
    if (m.get("n_real"), m.get("n_synthetic"), m.get("n_train")) != (len(ref.r_vols), n_syn, len(ref.t_vols)):
        return "other numbers of volumes"
    want = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _REUSE_IGNORES}
    # through JSON, as run.json stored it (tuples become lists)
    if {k: conf.get(k) for k in want} != json.loads(json.dumps(want)):
        return "other settings: " + ", ".join(k for k in want if conf.get(k) != json.loads(json.dumps(want[k])))
    written = (eval_dir / METRICS_FILE).stat().st_mtime
    if any((p / "participants.tsv").stat().st_mtime > written for p in given.values()):
        return "an input folder changed after it was judged"
    return None


def _judge_eval(syn_dir: Path, shown: str, s_vols: np.ndarray, s_table, ref: _Reference,
                ev_dir: Path, grid, cfg: CompareConfig) -> tuple[dict, dict | None]:
    """(metrics, reuse record or None) of one row written into ``ev_dir``: the EVAL_DIR of
    ``cfg.reuse_eval`` copied when :func:`_reusable`, else judged by the evaluate stage's writer, seeded as
    a lone ``neurodit evaluate`` is (so a row's numbers do not depend on the rows before it)."""
    import shutil

    from neurodit.metrics.evaluate import write_evaluation
    from neurodit.metrics.schema import read_metrics

    given = {Path(k).resolve(): v for k, v in cfg.reuse_eval.items()}.get(Path(syn_dir).resolve())
    record = None
    if given is not None:
        why = _reusable(Path(given), Path(syn_dir), len(s_vols), ref, grid, cfg.eval)
        record = {"from": str(given), "reused": why is None, "why_not": why}
        if why is None:
            shutil.copytree(given, ev_dir)
            return read_metrics(ev_dir), record
    ev_dir.mkdir()
    seed_everything(cfg.eval.seed)
    resampled = ref.resampled["real"] or ref.resampled["train"]
    # the synthetic ids checked against the real ones, the held-out set against the generator's training set
    metrics = write_evaluation(
        ev_dir, {"real": ref.r_vols, "synthetic": s_vols, "train": ref.t_vols},
        {"real": ref.r_table, "synthetic": s_table, "train": ref.t_table}, grid, cfg.eval,
        {"real": ref.real, "synthetic": syn_dir, "train": ref.train},
        {"real": str(ref.real), "synthetic": shown, "train": str(ref.train)}, stage="compare",
        notes=["compare: real and train " + ("resampled onto the synthetic grid" if resampled
                                             else "on the synthetic grid")])
    return metrics, record


def _judge_row(item: dict, ref: _Reference, tmp: Path, out: Path, grid, cfg: CompareConfig,
               norm: Normalization) -> dict:
    """One input sampled if a RUN and judged into ``eval-<name>`` (:func:`_judge_eval`): {metrics, budget,
    cost, syn_rel, timings, reuse (the evaluation's reuse record or None), syn_set (its volumes with sex
    labels in model range for the downstream experiment, None without one)}."""
    from neurodit.downstream import labelled_from_table

    name, tm = item["name"], {}
    t0 = time.perf_counter()
    syn_dir, syn_rel, s_vols, s_table, run_info = _synthetic_set(item, tmp, cfg)
    if item["kind"] == "run":
        tm["sample"] = round(time.perf_counter() - t0, 3)
    budget, cost = budget_and_cost(read_info(syn_dir / "run.json"), run_info, item["kind"])

    t0 = time.perf_counter()
    shown = str(syn_dir if item["kind"] == "synthetic" else out / syn_rel)
    metrics, reuse = _judge_eval(syn_dir, shown, s_vols, s_table, ref, tmp / f"eval-{name}", grid, cfg)
    tm["eval"] = round(time.perf_counter() - t0, 3)
    syn_set = None
    if ref.source is not None:
        syn_set = labelled_from_table(s_table, norm.to_model(s_vols).astype(np.float32), "sex",
                                      name=str(syn_dir / "participants.tsv"), synthetic=None)
        # every generator numbers its volumes syn-000001 ...: scoped by the row's name, the cohorts' ids stay
        # distinct as the downstream experiment requires (no cohort is ever pooled with another)
        syn_set = syn_set.scoped(name)
    return {"metrics": metrics, "budget": budget, "cost": cost, "syn_rel": syn_rel, "shown": shown, "timings": tm,
            "reuse": reuse, "syn_set": syn_set}


def _downstream(judged: dict[str, dict], ref: _Reference, tmp: Path, grid, ds_cfg: DownstreamConfig) -> dict:
    """One downstream experiment (the sex arms) with every row's synthetic set as a named cohort, into
    ``DS_DIR_NAME``: ``sex/real`` trained once, ``sex/real+synthetic[<name>]`` per row on the same folds,
    validation splits and initialisations. Returns its results.json."""
    from neurodit.downstream import run_experiment
    from neurodit.downstream.schema import read_results

    run_experiment(ref.source, None, tmp / DS_DIR_NAME, {name: j["syn_set"] for name, j in judged.items()}, ds_cfg,
                   inputs={"source": str(ref.real), "synthetic": {name: j["shown"] for name, j in judged.items()},
                           "grid": grid.to_dict()})
    return read_results(tmp / DS_DIR_NAME)


def compare(inputs: list[Path], real: str | Path, train: str | Path, out: str | Path, *,
            cfg: CompareConfig | None = None, overwrite: bool = False) -> Path:
    """Judge every input (synthetic cohort or RUN folder) against ``real`` (held-out) and ``train`` with
    one set of settings; write CMP_DIR ``out`` (:mod:`neurodit.compare.schema`). Returns ``out``.

    Refused before anything is written: inputs on different grids, a held-out set sharing participants
    with the train set, folders that are neither cohorts nor runs, a ``--label-as`` folder not among the
    inputs, a ``reuse_eval`` folder not among the synthetic inputs.
    """
    cfg = cfg or CompareConfig()
    seed_everything(cfg.seed)
    t_load = time.perf_counter()
    items = _parse_inputs(list(inputs), cfg.labels)
    _check_reuse(items, cfg.reuse_eval)
    grid = items[0]["grid"]
    norm = Normalization()
    ref = _load_reference(real, train, grid, cfg, norm)
    ds_cfg = dataclasses.replace(cfg.downstream, shape=tuple(int(s) for s in grid.shape))
    timings: dict = {"load": round(time.perf_counter() - t_load, 3)}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        judged = {item["name"]: _judge_row(item, ref, tmp, Path(out), grid, cfg, norm) for item in items}
        ds_results = None
        if ref.source is not None:
            t0 = time.perf_counter()
            ds_results = _downstream(judged, ref, tmp, grid, ds_cfg)
            timings["downstream"] = round(time.perf_counter() - t0, 3)
        rows = [make_row(item, j["metrics"], ds_results, j["budget"], j["cost"], j["syn_rel"],
                         DS_DIR_NAME if ds_results is not None else None)
                for item, j in zip(items, judged.values(), strict=True)]
        timings.update({name: j["timings"] for name, j in judged.items()})
        reused = {name: j["reuse"] for name, j in judged.items() if j["reuse"] is not None}
        first_metrics = judged[items[0]["name"]]["metrics"]

        t0 = time.perf_counter()
        floor = _floor(ref.r_vols, ref.t_vols, first_metrics, cfg.eval)
        timings["floor"] = round(time.perf_counter() - t0, 3)
        ranking, best, summary = rank_rows(rows)
        data = {"schema": SCHEMA, "inputs": {"real": str(real), "train": str(train)},
                "resampled": ref.resampled, "grid": grid.to_dict(),
                "n_real": len(ref.r_vols), "n_train": len(ref.t_vols), "config": dataclasses.asdict(cfg),
                "floor": floor, "rows": rows, "ranking": ranking, "best": best, "summary": summary,
                "figures": {"comparison": FIGURE_FILE}, "timings_s": timings, "eval_reuse": reused}
        atomic_write_bytes(tmp / FIGURE_FILE, comparison_figure(data))
        atomic_write_text(tmp / TABLE_FILE, comparison_markdown(data))
        write_json(tmp / RESULT_FILE, data)
        write_run_info(tmp, dataclasses.asdict(cfg), cfg.seed, stage="compare",
                       inputs={"generators": [str(i["path"]) for i in items], "real": str(real), "train": str(train)})
    return Path(out)


__all__ = ["COMPARE_ARMS", "CompareConfig", "compare", "compare_config"]
