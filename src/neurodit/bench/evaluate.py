"""``neurodit bench --evaluate`` and the judge's part of ``neurodit bench``: the judge's (``evaluate``)
seconds per family and its peak RSS at N and 4N synthetic volumes, each whole ``evaluate()`` in a fresh
process (its own high-water mark). Timings live here, never in tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.io import package_versions, write_json

NATIVE_2MM = (99, 117, 95)  # the phantom's MNI grid at 2 mm (neurodit.data.phantom): no resampling


def _write_real_cohort(vols: Any, table: Any, affine: Any, out: Path) -> Path:
    """A cohort folder (input format) of ``vols`` (N, D, H, W) mm²/s with ``table``'s id/sex/age rows."""
    from neurodit.data.cohort import write_participants
    from neurodit.io import write_nifti

    out.mkdir(parents=True, exist_ok=True)
    rows = table[["participant_id", "sex", "age"]].reset_index(drop=True)
    for i, pid in enumerate(rows["participant_id"]):
        write_nifti(vols[i], affine, out / f"{pid}_md.nii.gz")
    write_participants(rows, out / "participants.tsv")
    return out


# The child process of the memory check: one whole evaluate(), then its own peak RSS (VmHWM: the high-water
# mark of the resident set, file-backed pages included).
_CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from neurodit.metrics.evaluate import EvalConfig, evaluate
args = json.loads(sys.argv[1])
cfg = EvalConfig(**args["cfg"])
t0 = time.perf_counter()
evaluate(args["real"], args["syn"], args["out"], train=args["train"], cfg=cfg)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vmhwm_mb": hwm[0] / 1024 if hwm else None}))
"""


def _child_eval(real: Path, syn: Path, train: Path, out: Path, cfg: dict) -> dict[str, Any]:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    args = json.dumps({"real": str(real), "syn": str(syn), "train": str(train), "out": str(out), "cfg": cfg})
    proc = subprocess.run([sys.executable, "-c", _CHILD, args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluate child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_evaluate_time(work: Path, n_train: int = 40, n_real: int = 40, n_syn: int = 40,
                        voxel_size: float = 2.0, calibrate: bool = True, seed: int = 0) -> dict[str, Any]:
    """The judge at native resolution (issue 19): ``evaluate`` (default EvalConfig: C2ST 3 views, features,
    morphometry) of ``n_syn`` PCA-Gaussian samples vs ``n_real`` held-out phantom subjects with ``n_train``
    training subjects at ``voxel_size`` mm (2 mm: the phantom's 99x117x95 grid), in a fresh encoder cache
    (run "fresh": the encoder is trained), again with it cached ("cached"), and with ``--calibrate``."""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.generators.reference import write_reference_samples
    from neurodit.io import read_json
    from neurodit.metrics.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    ph = make_phantom_cohort("camcan", n_train + n_real, work / "phantom", seed=seed, voxel_size=voxel_size)
    cohort = read_cohort(ph)
    vols, grid = load_volumes(cohort)
    table = cohort.table
    train_dir = _write_real_cohort(vols[:n_train], table.iloc[:n_train], grid.affine, work / "train")
    real_dir = _write_real_cohort(vols[n_train:], table.iloc[n_train:], grid.affine, work / "real")
    labels = [str(s) for s in table["sex"].iloc[:n_train]]
    syn_dir = write_reference_samples(vols[:n_train], labels, n_syn, grid.affine, work / "syn", seed=seed)
    del vols
    setup_s = time.perf_counter() - t0
    runs = []
    cache = work / "cache"
    for name, cal in (("fresh", False), ("cached", False), ("calibrate", True))[:3 if calibrate else 2]:
        cfg = EvalConfig(encoder_cache=str(cache), calibrate=cal)
        t0 = time.perf_counter()
        out = evaluate(real_dir, syn_dir, work / f"eval-{name}", train=train_dir, cfg=cfg)
        wall = time.perf_counter() - t0
        m = read_json(out / "metrics.json")
        runs.append({"run": name, "calibrate": cal, "wall_s": round(wall, 2),
                     "encoder_cached": m.get("features", {}).get("encoder", {}).get("cached"),
                     "timings_s": m["timings_s"],
                     "c2st_auc": {v: round(r["auc"], 3) for v, r in m.get("c2st", {}).get("views", {}).items()}})
    return {"shape": list(grid.shape), "voxel_size_mm": voxel_size, "n_train": n_train, "n_real": n_real,
            "n_synthetic": n_syn, "setup_s": round(setup_s, 2), "runs": runs}


def bench_evaluate_memory(work: Path, ns: tuple[int, ...] = (10, 40), n_fixed: int = 10,
                          shape: tuple[int, int, int] = NATIVE_2MM, seed: int = 0,
                          cfg: dict | None = None, voxel_size: float = 2.0) -> dict[str, Any]:
    """(b): peak RSS of one whole ``evaluate()`` in a fresh subprocess for each synthetic set size in
    ``ns`` (real and train fixed at ``n_fixed`` phantom subjects each, drawn at ``voxel_size`` mm), on the
    grid ``shape`` (2 mm voxels). The
    own encoder is trained once beforehand (cached), so every child does the same work apart from N;
    ``cfg``: EvalConfig overrides (the defaults keep pairs, permutations and CNN epochs small)."""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.grid import make_grid
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.generators.reference import write_reference_samples
    from neurodit.metrics.evaluate import EvalConfig, feature_encoder

    cfg = {"max_pairs": 20, "permutations": 100, "bootstrap": 100, "coherence_pairs": 10,
           "c2st_permutations": 20, "c2st_cnn_epochs": 1, "encoder_cache": str(work / "cache"), **(cfg or {})}
    grid = make_grid(shape=shape, voxel_size=voxel_size)  # 2 mm: the native grid; 6 mm at 32^3 covers the brain
    ph = make_phantom_cohort("camcan", 2 * n_fixed, work / "phantom", seed=seed, voxel_size=voxel_size)
    cohort = read_cohort(ph)
    vols, _ = load_volumes(cohort, grid)
    table = cohort.table
    train_dir = _write_real_cohort(vols[:n_fixed], table.iloc[:n_fixed], grid.affine, work / "train")
    real_dir = _write_real_cohort(vols[n_fixed:], table.iloc[n_fixed:], grid.affine, work / "real")
    labels = [str(s) for s in table["sex"].iloc[:n_fixed]]
    t0 = time.perf_counter()
    train_vols, _ = load_volumes(read_cohort(train_dir))
    if cfg.get("features", True):  # train the encoder once, outside the measured children
        feature_encoder(train_vols, read_cohort(train_dir).table, EvalConfig(**cfg), None)
    encoder_s = time.perf_counter() - t0
    rows = []
    for n in ns:
        syn_dir = write_reference_samples(vols[:n_fixed], labels, n, grid.affine, work / f"syn-{n}", seed=seed)
        res = _child_eval(real_dir, syn_dir, train_dir, work / f"eval-{n}", cfg)
        rows.append({"n_synthetic": n, "path": "on-disk", **{k: round(v, 1) for k, v in res.items()}})
    del vols, train_vols
    return {"shape": list(shape), "n_real": n_fixed, "n_train": n_fixed, "cfg": cfg,
            "encoder_train_s": round(encoder_s, 1), "rows": rows,
            "volume_mb": round(4 * float(np.prod(shape)) / 2 ** 20, 2)}


def bench_evaluate(out: str | Path | None = None, work: str | Path | None = None, quick: bool = False,
                   memory: bool = True, timing: bool = True, calibrate: bool = True) -> dict[str, Any]:
    """``neurodit bench --evaluate``: :func:`bench_evaluate_time` and :func:`bench_evaluate_memory`, with
    the CPU; ``quick``: tiny sizes (a smoke run, numbers not meaningful). Writes JSON to ``out``."""
    import tempfile

    from neurodit.bench.machine import cpu_info

    res: dict[str, Any] = {"cpu": cpu_info()}
    with tempfile.TemporaryDirectory(prefix="neurodit-bench-", dir=work) as tmp:
        tmp_p = Path(tmp)
        if timing:
            (tmp_p / "time").mkdir()
            kw = dict(n_train=12, n_real=6, n_syn=8, voxel_size=8.0) if quick else {}
            res["time"] = bench_evaluate_time(tmp_p / "time", calibrate=calibrate, **kw)
        if memory:
            (tmp_p / "memory").mkdir()
            kw = dict(ns=(2, 8), n_fixed=6, shape=(24, 28, 24), cfg={"features": False}) if quick else {}
            res["memory"] = bench_evaluate_memory(tmp_p / "memory", **kw)
    res["versions"] = package_versions()
    if out is not None:
        write_json(out, res)
    return res


def format_evaluate(res: dict[str, Any]) -> str:
    """The ``bench --evaluate`` tables as text."""
    lines = [f"CPU: {res['cpu']['cpu_model']} ({res['cpu']['affinity']} usable cores), torch "
             f"{res['cpu']['torch_cpu_capability']}"]
    if "time" in res:
        t = res["time"]
        lines.append(f"evaluate time: {t['n_synthetic']} synthetic vs {t['n_real']} real (+{t['n_train']} train), "
                     f"{'x'.join(map(str, t['shape']))} voxels")
        fams = sorted({k for r in t["runs"] for k in r["timings_s"]})
        lines.append("  ".join(["run".ljust(10), "wall_s".rjust(7)] + [f.rjust(max(6, len(f))) for f in fams]))
        for r in t["runs"]:
            lines.append("  ".join([r["run"].ljust(10), f"{r['wall_s']:7.1f}"] +
                                   [f"{r['timings_s'].get(f, float('nan')):{max(6, len(f))}.1f}" for f in fams]))
    if "memory" in res:
        m = res["memory"]
        lines.append(f"evaluate peak RSS: {'x'.join(map(str, m['shape']))} voxels ({m['volume_mb']} MB a volume), "
                     f"{m['n_real']} real + {m['n_train']} train, one fresh process per row")
        lines.append("n_synthetic  path     seconds  peak_rss_mb (VmHWM)")
        for r in m["rows"]:
            lines.append(f"{r['n_synthetic']:>11}  {r['path']:<7}  {r['seconds']:7.1f}  {r['vmhwm_mb']:>11.1f}")
    return "\n".join(lines)
