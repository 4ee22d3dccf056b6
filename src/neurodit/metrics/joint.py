"""Several maps judged together (issue 22): each map by the judge on its own, then the joint view.

A synthetic subject whose MD and FA come from separate generators is not a subject: the maps of one voxel
are tied (CSF: high MD, FA near 0; white matter: low MD, high FA). The joint view asks whether the synthetic
maps keep the relation the real voxels show, for every pair of maps (A, B):

- ``corr``: per subject, the Spearman (rank) correlation of A and B over the voxels where both are positive
  (ranks: the relation is L-shaped, CSF high MD / low FA, white matter the reverse, not linear); the
  real and the synthetic subjects' mean with a percentile bootstrap CI over subjects, and the difference
  (synthetic - real) with its CI (resampling both sets).
- ``joint_tv``: the total-variation distance between the real and the synthetic joint (A, B) histograms
  (64 x 64 bins over the maps' windows, voxels where both are positive, pooled over subjects; 0 = the same
  histogram, 1 = disjoint), beside its ``floor``: the same distance between the training set and the
  held-out set (two seeded halves of the held-out set without one): two real samples of the same
  population. ``tv_ratio`` = joint_tv / floor.

EVAL_DIR of multi-map folders (``neurodit evaluate REAL SYN`` on folders holding ``md/``, ``fa/``, ...)::

    <map>/        one map's EVAL_DIR (metrics.json, figures), written by neurodit.metrics.evaluate
    joint.json    {schema "neurodit.joint/1", maps, pairs {"md~fa": {corr {real {mean, ci95, n}, synthetic
                  {...}, diff {mean, ci95}}, joint_tv, floor, floor_sets, tv_ratio, bins}}, headline {map:
                  {c2st {view: auc}, frechet_ratio, syn_syn, real_real}}, verdict}
    joint.png     per pair: real and synthetic joint histograms, the per-subject correlations
    run.json
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_bytes, write_json, write_run_info

SCHEMA = "neurodit.joint/1"
JOINT_FILE, JOINT_FIGURE = "joint.json", "joint.png"
BINS = 64


def judged_maps(real: str | Path, synthetic: str | Path, train: str | Path | None = None) -> tuple[str, ...]:
    """The maps to judge when the folders are multi-map folders (``neurodit.data.maps.map_folders``): the
    synthetic folder's maps, each of which the real (and train) folder must hold too; () when none of them
    is a multi-map folder. NeuroditError naming the odd folder when only some are."""
    from neurodit.data.maps import map_folders

    found = {k: map_folders(p) for k, p in (("real", real), ("synthetic", synthetic), ("train", train))
             if p is not None}
    if not any(found.values()):
        return ()
    maps = tuple(found["synthetic"])
    for k, p in (("synthetic", synthetic), ("real", real), ("train", train)):
        if p is None:
            continue
        missing = [m for m in maps if m not in found[k]] or ([] if found[k] else ["any map folder"])
        if missing:
            raise NeuroditError(f"the {k} folder is not a multi-map folder holding {', '.join(maps) or 'the maps'} "
                                f"(no {', '.join(missing)}/): judge several maps against folders of the same maps", p)
    return maps


def _subjects(folders: Sequence[Path]) -> Iterator[list[np.ndarray]]:
    """One subject's maps at a time: [(D, H, W) per folder], rows in table order (the folders list the same
    participants: checked)."""
    from neurodit.data.cohort import iter_volumes, read_cohort

    cohorts = [read_cohort(f) for f in folders]
    ids = [list(map(str, c.table["participant_id"])) for c in cohorts]
    for c, i in zip(cohorts[1:], ids[1:], strict=True):
        if i != ids[0]:
            raise NeuroditError(f"the {c.map} folder does not list the participants of the {cohorts[0].map} folder "
                                "in the same order: a subject's maps must come in the same rows",
                                c.data_dir / "participants.tsv")
    for vols in zip(*(iter_volumes(c) for c in cohorts), strict=True):
        yield [v for v, _, _ in vols]


@dataclasses.dataclass
class _PairStats:
    """Per subject correlations and the pooled joint histogram of one pair of maps over one set."""

    corr: list[float]
    hist: np.ndarray  # (BINS, BINS) counts


def pair_stats(subjects: Sequence[Sequence[np.ndarray]], a: int, b: int, windows: Sequence[tuple[float, float]]
               ) -> _PairStats:
    """Correlation per subject and the pooled 2D histogram of maps ``a`` and ``b`` (indices into each
    subject's list) over the voxels where both are positive; ``windows`` the maps' (vmin, vmax)."""
    corr, hist = [], np.zeros((BINS, BINS))
    edges = [np.linspace(lo, hi, BINS + 1) for lo, hi in (windows[a], windows[b])]
    for maps in subjects:
        x, y = np.asarray(maps[a], np.float64), np.asarray(maps[b], np.float64)
        keep = (x > 0) & (y > 0)
        if keep.sum() < 3:
            continue
        xv, yv = x[keep], y[keep]
        if xv.std() > 0 and yv.std() > 0:
            corr.append(float(np.corrcoef(stats.rankdata(xv), stats.rankdata(yv))[0, 1]))  # Spearman
        else:
            corr.append(0.0)
        hist += np.histogram2d(np.clip(xv, *windows[a]), np.clip(yv, *windows[b]), bins=edges)[0]
    return _PairStats(corr, hist)


def tv_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Total-variation distance of two histograms (normalised to sum 1): 0.5 * sum |p - q|, in [0, 1]."""
    s1, s2 = h1.sum(), h2.sum()
    if s1 == 0 or s2 == 0:
        return float("nan")
    return float(0.5 * np.abs(h1 / s1 - h2 / s2).sum())


def _mean_ci(values: Sequence[float], rng: np.random.Generator, n_boot: int = 1000) -> dict[str, Any]:
    from neurodit.metrics.msssim import bootstrap_ci

    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else float("nan"), "ci95": bootstrap_ci(v, n_boot, rng=rng),
            "n": int(v.size)}


def _diff_ci(real: Sequence[float], syn: Sequence[float], rng: np.random.Generator,
             n_boot: int = 1000) -> dict[str, Any]:
    r, s = np.asarray(real, np.float64), np.asarray(syn, np.float64)
    if not r.size or not s.size:
        return {"mean": float("nan"), "ci95": [float("nan")] * 2}
    boots = (s[rng.integers(0, s.size, (n_boot, s.size))].mean(1)
             - r[rng.integers(0, r.size, (n_boot, r.size))].mean(1))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"mean": float(s.mean() - r.mean()), "ci95": [float(lo), float(hi)]}


def joint_view(real: Sequence[Sequence[np.ndarray]], synthetic: Sequence[Sequence[np.ndarray]],
               maps: Sequence[str], train: Sequence[Sequence[np.ndarray]] | None = None,
               seed: int = 0) -> dict[str, Any]:
    """The ``pairs`` of joint.json (module docstring) for subjects given as lists of per-map (D, H, W)
    volumes in physical units (map order ``maps``); also returns the histograms under ``_hist`` for the
    figure. Pure: no files."""
    from neurodit.data.maps import get_map

    windows = [(get_map(m).vmin, get_map(m).vmax) for m in maps]
    rng = np.random.default_rng(seed)
    if train is not None and len(train):
        floor_a, floor_b, floor_sets = train, real, "train vs held-out"
    else:
        order = rng.permutation(len(real))
        half = len(real) // 2
        floor_a, floor_b = [real[i] for i in order[:half]], [real[i] for i in order[half:]]
        floor_sets = "two seeded halves of held-out"
    pairs, hists = {}, {}
    for a, b in itertools.combinations(range(len(maps)), 2):
        key = f"{maps[a]}~{maps[b]}"
        r, s = pair_stats(real, a, b, windows), pair_stats(synthetic, a, b, windows)
        fa, fb = pair_stats(floor_a, a, b, windows), pair_stats(floor_b, a, b, windows)
        tv, floor = tv_distance(r.hist, s.hist), tv_distance(fa.hist, fb.hist)
        pairs[key] = {"corr": {"real": _mean_ci(r.corr, rng), "synthetic": _mean_ci(s.corr, rng),
                               "diff": _diff_ci(r.corr, s.corr, rng)},
                      "joint_tv": tv, "floor": floor, "floor_sets": floor_sets,
                      "tv_ratio": tv / floor if floor and np.isfinite(floor) else float("nan"),
                      "bins": BINS, "windows": {maps[a]: list(windows[a]), maps[b]: list(windows[b])}}
        hists[key] = (r.hist, s.hist, r.corr, s.corr)
    return {"pairs": pairs, "_hist": hists}


def joint_verdict(pairs: dict[str, Any]) -> str:
    """One sentence per pair: is the relation kept (the correlation difference's CI holds 0 and the joint
    histogram is within 2x the real floor), or how it is off."""
    parts = []
    for key, p in pairs.items():
        a, b = (k.upper() for k in key.split("~"))
        d, r, s = p["corr"]["diff"], p["corr"]["real"]["mean"], p["corr"]["synthetic"]["mean"]
        lo, hi = d["ci95"]
        corr_ok = lo <= 0.0 <= hi
        tv_ok = np.isfinite(p["tv_ratio"]) and p["tv_ratio"] <= 2.0
        how = ("kept" if corr_ok and tv_ok else "not kept")
        parts.append(f"{a}-{b} relation {how}: per-subject correlation {s:+.2f} synthetic vs {r:+.2f} real "
                     f"(difference {d['mean']:+.2f}, CI {lo:+.2f} to {hi:+.2f}); joint histogram "
                     f"{p['tv_ratio']:.1f}x the real-vs-real distance")
    return "; ".join(parts) + "."


def joint_figure(hists: dict[str, Any], maps_windows: dict[str, Any], path: Path) -> Path:
    """Per pair: real and synthetic joint histograms (log counts) and the per-subject correlations."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(hists), 3, figsize=(11, 3.4 * len(hists)), squeeze=False)
    for row, (key, (rh, sh, rc, sc)) in zip(axes, hists.items(), strict=True):
        a, b = key.split("~")
        (xa, xb), (ya, yb) = maps_windows[key][a], maps_windows[key][b]
        top = np.log1p(max(rh.max() / max(rh.sum(), 1), sh.max() / max(sh.sum(), 1)) * 1e4)
        for ax, h, title in ((row[0], rh, "real"), (row[1], sh, "synthetic")):
            ax.imshow(np.log1p(h.T / max(h.sum(), 1) * 1e4), origin="lower", extent=(xa, xb, ya, yb),
                      aspect="auto", cmap="magma", vmin=0, vmax=top)
            ax.set_xlabel(f"{a.upper()}")
            ax.set_ylabel(f"{b.upper()}")
            ax.set_title(f"{title}: {a.upper()} vs {b.upper()} (voxels)", fontsize=9)
        bins = np.linspace(-1, 1, 41)
        row[2].hist(rc, bins=bins, alpha=0.6, label=f"real (n={len(rc)})")
        row[2].hist(sc, bins=bins, alpha=0.6, label=f"synthetic (n={len(sc)})")
        row[2].set_xlabel(f"per-subject correlation {a.upper()}-{b.upper()}")
        row[2].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The per-map numbers joint.json repeats: C2ST AUC per view, Fréchet ratio, diversity."""
    c2st = {v: r.get("auc") for v, r in (metrics.get("c2st") or {}).get("views", {}).items()}
    feats = metrics.get("features") or {}
    ms = metrics.get("msssim") or {}
    return {"c2st": c2st, "frechet_ratio": feats.get("frechet_ratio"),
            "syn_syn": (ms.get("syn_syn") or {}).get("mean"), "real_real": (ms.get("real_real") or {}).get("mean"),
            "memorization_fraction": (metrics.get("memorization") or {}).get("fraction_above")}


def evaluate_maps(real: str | Path, synthetic: str | Path, out: str | Path, maps: Sequence[str], judge, *,
                  train: str | Path | None = None, cfg=None, overwrite: bool = False) -> Path:
    """``neurodit evaluate`` on multi-map folders: ``out/<map>/`` per map by ``judge(folder, real, synthetic,
    train, cfg) -> metrics`` (``neurodit.metrics.evaluate.judge_folders``, handed in so that this module does
    not import the evaluate stage that calls it), one set of settings, then ``joint.json`` and ``joint.png``
    (module docstring). Atomic as a whole; returns ``out``."""
    from neurodit.metrics.config import EvalConfig

    cfg = cfg or EvalConfig()
    real, synthetic = Path(real), Path(synthetic)
    sets = {"real": real, "synthetic": synthetic, **({"train": Path(train)} if train is not None else {})}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        heads = {}
        for m in maps:
            (tmp / m).mkdir()
            metrics = judge(tmp / m, real / m, synthetic / m, None if train is None else Path(train) / m, cfg)
            heads[m] = headline(metrics)
        subjects = {k: list(_subjects([p / m for m in maps])) for k, p in sets.items()}
        view = joint_view(subjects["real"], subjects["synthetic"], maps, subjects.get("train"), cfg.seed)
        hists = view.pop("_hist")
        pairs = view["pairs"]
        result = {"schema": SCHEMA, "maps": list(maps), "pairs": pairs, "headline": heads,
                  "verdict": joint_verdict(pairs) if pairs else "one map: no joint view.",
                  "figures": {"joint": JOINT_FIGURE} if pairs else {}}
        if pairs:
            joint_figure(hists, {k: p["windows"] for k, p in pairs.items()}, tmp / JOINT_FIGURE)
        write_json(tmp / JOINT_FILE, result)
        write_run_info(tmp, dataclasses.asdict(cfg), cfg.seed, stage="evaluate", maps=list(maps),
                       inputs={k: str(v) for k, v in sets.items()})
    return Path(out)


def read_joint(eval_dir: str | Path) -> dict[str, Any] | None:
    """joint.json of a multi-map EVAL_DIR (None when the folder has none: a one-map evaluation)."""
    from neurodit.io import read_json

    f = Path(eval_dir) / JOINT_FILE
    if not f.is_file():
        return None
    data = read_json(f)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise NeuroditError(f"not a joint evaluation (schema {data.get('schema') if isinstance(data, dict) else None})", f)
    return data


__all__ = ["JOINT_FILE", "SCHEMA", "evaluate_maps", "joint_verdict", "joint_view", "judged_maps", "pair_stats",
           "read_joint", "tv_distance"]
