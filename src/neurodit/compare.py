"""``neurodit compare``: several generators judged side by side with one set of settings.

Each input is a synthetic cohort folder (``neurodit sample`` / ``neurodit baseline`` output) or a
training RUN folder (then ``n`` volumes are sampled first, balanced over its classes). Every synthetic
cohort is judged against the same real held-out set (``--real``) and training set (``--train``) by
the full judge (:func:`neurodit.metrics.evaluate.evaluate_arrays`, one shared ``EvalConfig``; the feature
encoder is our own, trained once on TRAIN and cached by the training data's hash, so every row is
measured with the same encoder) and by the downstream sex arms (``sex/real`` vs ``sex/real+synthetic``
of :mod:`neurodit.downstream.experiment`).

Downstream source: the real **held-out** participants (cross-validated, grouped by participant), never
TRAIN: the generators were fitted on TRAIN, so a test fold holding training subjects would reward a
generator for copying them (the ``copy`` baseline would "help" by leaking test subjects into training).

Grids: the synthetic cohorts must all share one grid (else NeuroditError naming the odd folder, before
anything is written). ``--real`` and ``--train`` may be raw cohort folders on any grid: when theirs
differs they are resampled onto the synthetic grid by the data layer
(``neurodit.data.cohort.load_volumes(cohort, grid)``: Gaussian anti-aliasing + trilinear, as ``prepare``).

``CMP_DIR`` (written atomically; nothing is left behind on an error):

- ``comparison.json``::

    schema        "neurodit.compare/1"
    inputs        {real, train}  folders as given;  resampled {real: bool, train: bool}
    grid          {shape, affine}  of the synthetic cohorts (real/train resampled onto it when needed)
    n_real, n_train (int)
    config        the resolved CompareConfig (eval and downstream settings shared by every row)
    floor         {c2st {view: {auc, auc_ci95, p_value}} (real held-out vs real training: what "cannot
                   tell apart" looks like here), msssim_real_real, frechet (train vs held-out features,
                   or null), mmd_rbf (train vs held-out {mmd2, p_value})}
    rows          [{name, label, budget, kind ("run" | "synthetic"), input (folder as given),
                    synthetic (cohort judged, relative to CMP_DIR when sampled here), eval ("eval-<name>"),
                    downstream_dir ("downstream-<name>" | null), n_synthetic,
                    quality {c2st {view: {auc, auc_ci95, p_value}}, c2st_worst_auc, frechet, precision,
                             recall, mmd_rbf {mmd2, p_value}},
                    diversity {syn_syn, real_real, low_diversity, zero_diversity},
                    memorization {fraction_above, expected_fraction, flagged, n_duplicates},
                    downstream {real, real_synthetic (balanced accuracy means), gain, ci95 [lo, hi],
                                p_wilcoxon, outcome, n_runs} | null,
                    cost {train_seconds, sample_seconds, sample_seconds_per_volume, parameters,
                          peak_rss_mb, peak_gpu_mb}  (null where the folders' run.json do not record it),
                    verdicts {family: sentence}, eligible (bool: no near-exact copies of training subjects
                    and not zero diversity; a memorization flag alone is shown, not disqualifying)}]
    ranking       {c2st: [names, lowest worst-view AUC first], downstream: [names, largest gain first],
                   overall: [eligible names by worst-view C2ST AUC, then the others]}
    best          {c2st, downstream, overall}: names among eligible rows (or null)
    summary       one sentence: the best generator by C2ST and by downstream gain
    figures       {comparison: "comparison.png"}
    timings_s     {name: {sample, eval, downstream}, floor, load}

- ``comparison.md``: the Markdown table (:func:`neurodit.report.compare.comparison_markdown`);
- ``comparison.png``: C2ST AUC per view and Fréchet distance per generator with the real-vs-real floor;
- ``eval-<name>/``: each row's full EVAL_DIR (``metrics.json``, figures, ``run.json``);
- ``downstream-<name>/``: each row's DS_DIR; ``syn-<name>/``: cohorts sampled here from RUN inputs;
- ``run.json``.

``label`` is what a reader sees for a row (``--label-as NAME=DIR``, else the folder name) and ``budget``
what it was trained and sampled with (generator, steps, seconds, device), so an undertrained baseline
is never mistaken for a verdict on its method.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np

from neurodit.data.normalize import Normalization
from neurodit.downstream.experiment import DownstreamConfig
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, read_json, read_schema_json, seed_everything, write_json, write_run_info
from neurodit.metrics.evaluate import EvalConfig

SCHEMA = "neurodit.compare/1"
RESULT_FILE = "comparison.json"
COMPARE_ARMS = ("sex/real", "sex/real+synthetic")


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
    sample_steps: int = 25  # RUN inputs: sampler steps, guidance, scheduler
    sample_guidance: float = 2.0
    sample_scheduler: str | None = None  # None: each run's own sampler (ddim for ddpm runs, euler for flow)

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


# ------------------------------------------------------------------------------------------- inputs
def _is_run(folder: Path) -> bool:
    """A training RUN folder (not a cohort): a run carries prepare.json and its model / config."""
    return (folder / "prepare.json").is_file() and (
        (folder / "train_config.yaml").is_file() or (folder / "model").is_dir())


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


def _read_info(path: Path) -> dict:
    try:
        return read_json(path) if path.is_file() else {}
    except NeuroditError:
        return {}


def _budget_and_cost(syn_info: dict, run_info: dict, kind: str) -> tuple[str, dict]:
    """(budget sentence, cost dict) from a synthetic folder's run.json and its training run's run.json."""
    sampling = syn_info.get("sampling") or {}
    conf = syn_info.get("config") or {}
    cost = {"train_seconds": run_info.get("train_seconds"), "sample_seconds": sampling.get("seconds"),
            "sample_seconds_per_volume": sampling.get("seconds_per_volume"),
            "parameters": run_info.get("num_params"),
            "peak_rss_mb": run_info.get("peak_rss_mb") or sampling.get("peak_rss_mb"),
            "peak_gpu_mb": run_info.get("peak_gpu_mb") or sampling.get("peak_gpu_mb")}
    if syn_info.get("stage") == "baseline":
        budget = f"{conf.get('kind', '?')} reference generator (fitted in closed form on TRAIN)"
    elif run_info:
        rc = run_info.get("config") or {}
        gen = rc.get("generator") or (run_info.get("preset") or {}).get("name") or rc.get("preset") or "dit"
        parts = [str(gen)]
        if run_info.get("steps_trained") is not None:
            parts.append(f"{run_info['steps_trained']} steps")
        if run_info.get("train_seconds") is not None:
            parts.append(f"{run_info['train_seconds'] / 60:.1f} min training")
        if run_info.get("mixed_precision") is not None:
            parts.append(f"precision {run_info['mixed_precision']}")
        if conf.get("steps") is not None:
            parts.append(f"sampled with {conf.get('scheduler', '?')} {conf['steps']} steps, "
                         f"guidance {conf.get('guidance', '?')}")
        budget = ", ".join(parts)
    else:
        budget = "unknown (no run.json with training or sampling settings)" if kind == "synthetic" else "run"
    return budget, cost


def _load_on(folder: Path, grid) -> tuple[np.ndarray, object, bool]:
    """(volumes mm²/s on ``grid``, cohort, resampled?): as stored when the folder is already on ``grid``,
    else resampled by the data layer (a raw cohort on any grid, or mixed grids)."""
    from neurodit.data.cohort import load_volumes, read_cohort

    cohort = read_cohort(folder)
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
        if _is_run(p):
            kind, grid, vols, table = "run", _run_grid(p), None, None
        elif (p / "participants.tsv").is_file():
            cohort = read_cohort(p)
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


# ------------------------------------------------------------------------------------------- rows
def _row(item: dict, metrics: dict, ds_results: dict | None, budget: str, cost: dict, syn_rel: str,
         ds_rel: str | None) -> dict:
    c2st = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")}
            for v, r in (metrics.get("c2st") or {}).get("views", {}).items()}
    feats = metrics.get("features") or {}
    rbf = metrics["mmd"]["rbf"]["real_syn"]
    div, mem = metrics["diversity"], metrics["memorization"]
    down = None
    if ds_results is not None:
        arms = ds_results["arms"]
        comp = next((c for c in ds_results["comparisons"] if c["name"] == "sex/real+synthetic vs sex/real"), None)
        if comp is not None:
            ba = comp["metrics"]["balanced_accuracy"]
            down = {"real": arms["sex/real"]["metrics"]["balanced_accuracy"]["mean"],
                    "real_synthetic": arms["sex/real+synthetic"]["metrics"]["balanced_accuracy"]["mean"],
                    "gain": ba["mean_diff"], "ci95": ba["ci95"], "p_wilcoxon": ba["p_wilcoxon"],
                    "outcome": comp["outcome"], "n_runs": ba["n_pairs"]}
    return {"name": item["name"], "label": item["label"], "budget": budget, "kind": item["kind"],
            "input": str(item["path"]), "synthetic": syn_rel, "eval": f"eval-{item['name']}",
            "downstream_dir": ds_rel, "n_synthetic": metrics["n_synthetic"],
            "quality": {"c2st": c2st, "c2st_worst_auc": max((r["auc"] for r in c2st.values()), default=None),
                        "frechet": feats.get("frechet"), "precision": feats.get("precision"),
                        "recall": feats.get("recall"),
                        "mmd_rbf": {"mmd2": rbf["mmd2"], "p_value": rbf["p_value"]}},
            "diversity": {k: div[k] for k in ("syn_syn", "real_real", "low_diversity", "zero_diversity")},
            "memorization": {k: mem[k] for k in ("fraction_above", "expected_fraction", "flagged", "n_duplicates")},
            "downstream": down, "cost": cost, "verdicts": dict(metrics.get("verdicts", {})),
            # ranked unless it re-emits training subjects (near-exact copies) or one image: the audit's
            # fraction above the held-out percentile is noisy on small held-out sets (and flags a PCA of few
            # subjects, whose samples live in the training span), so it is shown, not used to disqualify
            "eligible": not (mem["n_duplicates"] > 0 or div["zero_diversity"])}


def rank_rows(rows: list[dict]) -> tuple[dict, dict, str]:
    """(ranking, best, summary sentence) of comparison rows (see the module docstring)."""
    inf = float("inf")

    def c2st_key(r):
        w = r["quality"]["c2st_worst_auc"]
        return inf if w is None else w

    def gain_key(r):
        return -inf if r["downstream"] is None else r["downstream"]["gain"]

    by_c2st = sorted(rows, key=c2st_key)
    by_gain = sorted([r for r in rows if r["downstream"] is not None], key=gain_key, reverse=True)
    overall = [r for r in by_c2st if r["eligible"]] + [r for r in by_c2st if not r["eligible"]]
    ok_c2st = [r for r in by_c2st if r["eligible"] and r["quality"]["c2st_worst_auc"] is not None]
    ok_gain = [r for r in by_gain if r["eligible"]]
    best = {"c2st": ok_c2st[0]["name"] if ok_c2st else None,
            "downstream": ok_gain[0]["name"] if ok_gain else None,
            "overall": overall[0]["name"] if overall and overall[0]["eligible"] else None}
    parts = []
    if ok_c2st:
        r = ok_c2st[0]
        parts.append(f"best by the classifier test: {r['label']} (worst-view C2ST AUC "
                     f"{r['quality']['c2st_worst_auc']:.2f})")
    if ok_gain:
        r = ok_gain[0]
        d = r["downstream"]
        parts.append(f"best by downstream gain: {r['label']} ({d['gain']:+.3f} balanced accuracy, 95% CI "
                     f"{d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, {d['outcome']})")
    excluded = [r["label"] for r in rows if not r["eligible"]]
    flagged = [r["label"] for r in rows if r["eligible"] and r["memorization"]["flagged"]]
    summary = ("; ".join(parts) or "no generator qualifies") + (
        f"; not ranked (copies of training subjects or zero diversity): {', '.join(excluded)}" if excluded else "") + (
        f"; memorization audit flags {', '.join(flagged)}" if flagged else "") + "."
    summary = summary[0].upper() + summary[1:]
    return ({"c2st": [r["name"] for r in by_c2st], "downstream": [r["name"] for r in by_gain],
             "overall": [r["name"] for r in overall]}, best, summary)


def _floor(real: np.ndarray, train: np.ndarray, first_metrics: dict, cfg: EvalConfig) -> dict:
    """Real held-out vs real training: the C2ST of two real sets, and the floors every eval already has."""
    from neurodit.metrics.evaluate import brain_mask, c2st_family

    c2st = None
    if cfg.c2st:
        fam = c2st_family(real, train, None, brain_mask(real, train), cfg)
        c2st = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")} for v, r in fam["views"].items()}
    feats = first_metrics.get("features") or {}
    rbf = first_metrics["mmd"]["rbf"]["floor"]
    return {"c2st": c2st, "msssim_real_real": first_metrics["msssim"]["real_real"]["mean"],
            "frechet": (feats.get("floor") or {}).get("frechet"),
            "mmd_rbf": {"mmd2": rbf["mmd2"], "p_value": rbf["p_value"]}}


# ------------------------------------------------------------------------------------------- entry
def compare(inputs: list[Path], real: str | Path, train: str | Path, out: str | Path, *,
            cfg: CompareConfig | None = None, overwrite: bool = False) -> Path:
    """Judge every input (synthetic cohort or RUN folder) against ``real`` (held-out) and ``train`` with
    one set of settings; write CMP_DIR ``out`` (module docstring). Returns ``out``.

    Refused before anything is written: inputs on different grids, a held-out set sharing participants
    with the train set, folders that are neither cohorts nor runs, a ``--label-as`` folder not among the
    inputs.
    """
    from neurodit.downstream import labelled_from_table, run_experiment
    from neurodit.metrics.evaluate import check_inputs, evaluate_arrays, labels_of

    cfg = cfg or CompareConfig()
    seed_everything(cfg.seed)
    t_load = time.perf_counter()
    items = _parse_inputs(list(inputs), cfg.labels)
    grid = items[0]["grid"]
    r_vols, r_cohort, r_res = _load_on(Path(real), grid)
    t_vols, t_cohort, t_res = _load_on(Path(train), grid)
    r_ids, t_ids = list(r_cohort.table["participant_id"]), list(t_cohort.table["participant_id"])
    shared = sorted(set(r_ids) & set(t_ids))
    if shared:
        raise NeuroditError(f"{len(shared)} participant(s) are in both the held-out (--real) and the --train "
                            f"folder, e.g. {shared[0]}: split by participant", real)
    ds_cfg = dataclasses.replace(cfg.downstream, shape=tuple(int(s) for s in grid.shape))
    norm = Normalization()
    source = None
    if cfg.run_downstream:  # the real held-out participants with sex labels, model range
        source = labelled_from_table(r_cohort.table, norm.to_model(r_vols).astype(np.float32), "sex",
                                     name=str(Path(real) / "participants.tsv"), synthetic=False)
    voxel_ml = float(np.prod(grid.voxel_size)) / 1000.0
    timings: dict = {"load": round(time.perf_counter() - t_load, 3)}
    rows: list[dict] = []
    first_metrics = None
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for item in items:
            name, tm = item["name"], {}
            t0 = time.perf_counter()
            if item["kind"] == "run":
                syn_dir = _sample_run(item["path"], cfg.n, tmp / f"syn-{name}", cfg)
                syn_rel = f"syn-{name}"
                from neurodit.data.cohort import load_volumes, read_cohort

                cohort = read_cohort(syn_dir)
                s_vols, _ = load_volumes(cohort, None)
                s_table = cohort.table
                run_info = _read_info(item["path"] / "run.json")
                tm["sample"] = round(time.perf_counter() - t0, 3)
            else:
                syn_dir, syn_rel = item["path"], str(item["path"])
                s_vols, s_table = item["volumes"], item["table"]
                conf = (_read_info(syn_dir / "run.json").get("config") or {})
                run_info = _read_info(Path(conf["run_dir"]) / "run.json") if conf.get("run_dir") else {}
            # synthetic ids distinct from real ones, held-out disjoint from the generator's training set
            check_inputs(real, r_ids, syn_dir, [str(x) for x in s_table["participant_id"]], train, t_ids)
            budget, cost = _budget_and_cost(_read_info(syn_dir / "run.json"), run_info, item["kind"])

            t0 = time.perf_counter()
            ev_dir = tmp / f"eval-{name}"
            ev_dir.mkdir()
            metrics = evaluate_arrays(
                r_vols, s_vols, t_vols, cfg.eval, norm, fig_dir=ev_dir, real_ids=r_ids,
                syn_ids=[str(x) for x in s_table["participant_id"]], train_ids=t_ids,
                syn_labels=labels_of(s_table, cfg.eval.condition), train_labels=labels_of(t_cohort.table, cfg.eval.condition),
                voxel_volume_ml=voxel_ml, tables={"real": r_cohort.table, "synthetic": s_table, "train": t_cohort.table})
            metrics["grid"] = grid.to_dict()
            metrics["inputs"] = {"real": str(real), "synthetic": str(syn_dir if item["kind"] == "synthetic"
                                                                      else Path(out) / syn_rel),
                                 "train": str(train)}
            metrics["notes"].append("compare: real and train " + ("resampled onto the synthetic grid"
                                                                  if r_res or t_res else "on the synthetic grid"))
            write_json(ev_dir / "metrics.json", metrics)
            write_run_info(ev_dir, dataclasses.asdict(cfg.eval), cfg.eval.seed, inputs=metrics["inputs"],
                           stage="compare")
            tm["eval"] = round(time.perf_counter() - t0, 3)
            first_metrics = first_metrics or metrics

            ds_results, ds_rel = None, None
            if source is not None:
                t0 = time.perf_counter()
                syn_set = labelled_from_table(s_table, norm.to_model(s_vols).astype(np.float32), "sex",
                                              name=str(syn_dir / "participants.tsv"), synthetic=None)
                ds_rel = f"downstream-{name}"
                run_experiment(source, None, tmp / ds_rel, syn_set, ds_cfg,
                               inputs={"source": str(real), "synthetic": metrics["inputs"]["synthetic"],
                                       "grid": grid.to_dict()})
                ds_results = read_json(tmp / ds_rel / "results.json")
                tm["downstream"] = round(time.perf_counter() - t0, 3)
            rows.append(_row(item, metrics, ds_results, budget, cost, syn_rel, ds_rel))
            timings[name] = tm
            del s_vols

        t0 = time.perf_counter()
        floor = _floor(r_vols, t_vols, first_metrics, cfg.eval)
        timings["floor"] = round(time.perf_counter() - t0, 3)
        ranking, best, summary = rank_rows(rows)
        data = {"schema": SCHEMA, "inputs": {"real": str(real), "train": str(train)},
                "resampled": {"real": r_res, "train": t_res}, "grid": grid.to_dict(),
                "n_real": len(r_vols), "n_train": len(t_vols), "config": dataclasses.asdict(cfg),
                "floor": floor, "rows": rows, "ranking": ranking, "best": best, "summary": summary,
                "figures": {"comparison": "comparison.png"}, "timings_s": timings}
        from neurodit.io import atomic_write_bytes, atomic_write_text
        from neurodit.report.compare import comparison_figure, comparison_markdown

        atomic_write_bytes(tmp / "comparison.png", comparison_figure(data))
        atomic_write_text(tmp / "comparison.md", comparison_markdown(data))
        write_json(tmp / RESULT_FILE, data)
        write_run_info(tmp, dataclasses.asdict(cfg), cfg.seed, stage="compare",
                       inputs={"generators": [str(i["path"]) for i in items], "real": str(real), "train": str(train)})
    return Path(out)


REQUIRED = ("rows", "floor", "ranking", "best", "summary")


def read_comparison(cmp_dir: str | Path) -> dict:
    """``CMP_DIR/comparison.json`` (schema ``neurodit.compare/1``); NeuroditError naming the file when it is
    missing, of another schema or lacks one of ``REQUIRED``."""
    path = Path(cmp_dir) / RESULT_FILE
    data = read_schema_json(path, SCHEMA, "neurodit compare", REQUIRED)
    if not isinstance(data["rows"], list):
        raise NeuroditError("'rows' must be a list", path)
    return data


__all__ = ["COMPARE_ARMS", "CompareConfig", "compare", "compare_config", "rank_rows", "read_comparison"]
