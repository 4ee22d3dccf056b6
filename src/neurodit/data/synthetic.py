"""Write a synthetic cohort folder: the output format of ``neurodit sample`` and ``neurodit baseline``.

A synthetic cohort is an ordinary cohort folder (docs/ARCHITECTURE.md, "Input format") that
``neurodit prepare`` / ``evaluate`` / ``downstream`` read back with ``read_cohort``:

- ``syn-000001.nii.gz`` ... : 3D float32 MD maps in mm²/s on the grid affine;
- ``participants.tsv``: ``participant_id`` (``syn-000001`` ...), one column per label (e.g. ``sex``),
  ``synthetic`` = 1;
- ``run.json``: resolved config, seed, versions (``neurodit.io.write_run_info``), and ``sampling``
  ``{seconds, seconds_per_volume, n, peak_rss_mb, peak_gpu_mb}``: wall time of drawing and writing the
  volumes (the iterator is consumed here, so this holds for every generator), the process's peak
  resident memory so far (``ru_maxrss``) and, when CUDA was used, torch's peak allocated GPU memory.

Everything is built in a temporary sibling folder and renamed into place (``neurodit.io.atomic_dir``).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurodit.data.cohort import write_participants
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, write_nifti, write_run_info

SYN_PREFIX = "syn-"  # real ids are sub-*: synthetic ids can never collide with them


def parse_label(items: list[str] | str | None) -> dict[str, str]:
    """``["sex=F"]`` or ``"sex=F,age_bin=<50"`` -> ``{"sex": "F", ...}`` (the ``--label`` option)."""
    if not items:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            if "=" not in part:
                raise NeuroditError(f"--label '{part}' must look like column=value, e.g. sex=F")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def synthetic_id(i: int) -> str:
    """0-based index -> ``syn-000001`` ..."""
    return f"{SYN_PREFIX}{i + 1:06d}"


def _first_free(avoid: Collection[str]) -> int:
    """0-based index after the largest ``syn-`` number in ``avoid`` (0 when none)."""
    pattern = re.compile(re.escape(SYN_PREFIX) + r"(\d+)")
    return max((int(m.group(1)) for a in avoid if (m := pattern.fullmatch(str(a)))), default=0)


def synthetic_ids(n: int, avoid: Collection[str] = ()) -> list[str]:
    """``n`` synthetic ids that collide with none of ``avoid`` (e.g. the ``--match`` table's ids, which may
    themselves be an earlier synthetic cohort's ``syn-*``): numbering starts after the largest ``syn-``
    number in ``avoid`` (``syn-000001`` ... when there is none)."""
    start = _first_free(avoid)
    ids = [synthetic_id(start + i) for i in range(n)]
    clash = set(ids) & {str(a) for a in avoid}
    if clash:  # cannot happen by construction; a check, not a silent assumption
        raise NeuroditError(f"synthetic ids collide with the table's: {sorted(clash)[:3]}")
    return ids


def label_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """One label dict per volume (``[{"sex": "F"}, ...]``, how the samplers hold classes) -> the
    ``{column: [value per volume]}`` form of :func:`write_synthetic_cohort`."""
    return {col: [r[col] for r in rows] for col in (rows[0] if rows else {})}


def peak_memory_mb() -> dict[str, float | None]:
    """``{"peak_rss_mb", "peak_gpu_mb"}``: the process's peak resident set size so far (None where the
    ``resource`` module is missing) and torch's peak allocated CUDA memory (None unless CUDA was used)."""
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
    except ImportError:
        rss_mb = None
    gpu = None
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {"peak_rss_mb": None if rss_mb is None else round(rss_mb, 1), "peak_gpu_mb": gpu}


def write_synthetic_cohort(volumes_mm2s: Iterable[np.ndarray], labels: Mapping[str, Sequence[Any]] | None,
                           affine: np.ndarray, out: str | Path, *, meta: dict, seed: int | None = None,
                           overwrite: bool = False, avoid_ids: Collection[str] = (), map_name: str = "md",
                           **run_extra: Any) -> Path:
    """Write volumes (an (N, D, H, W) array, or any iterable of (D, H, W) arrays, e.g. a generator that
    draws them batch by batch so memory stays flat in N) as a synthetic cohort folder ``out``.

    ``labels``: ``{column: [value per volume]}`` (may be empty/None); every list must have one value per
    volume. ``avoid_ids``: participant ids the synthetic ids must not take (:func:`synthetic_ids`).
    ``meta`` is the resolved config stored in ``run.json`` with ``seed`` and ``run_extra``. ``map_name``: the
    scalar map the volumes hold, recorded in ``map.json`` (``neurodit.data.maps``).
    Atomic: on any error (including one raised by the volume iterator) ``out`` is left as it was.
    """
    labels = {str(k): list(v) for k, v in (labels or {}).items()}
    for col in labels:
        if col in ("participant_id", "synthetic", "path"):
            raise NeuroditError(f"label column '{col}' is reserved in a synthetic cohort")
    lengths = {len(v) for v in labels.values()}
    if len(lengths) > 1:
        raise NeuroditError(f"label columns have different lengths: { {k: len(v) for k, v in labels.items()} }")
    affine = np.asarray(affine, dtype=np.float64)
    avoid_ids = frozenset(map(str, avoid_ids))
    first = _first_free(avoid_ids)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        n = 0
        shape = None
        t0 = time.perf_counter()
        for vol in volumes_mm2s:
            vol = np.asarray(vol, dtype=np.float32)
            if vol.ndim != 3:
                raise NeuroditError(f"synthetic volume {n + 1} has shape {vol.shape}, expected (D, H, W)", out)
            if shape is not None and vol.shape != shape:
                raise NeuroditError(f"synthetic volume {n + 1} has shape {vol.shape}, the first {shape}", out)
            shape = vol.shape
            write_nifti(vol, affine, tmp / f"{synthetic_id(first + n)}.nii.gz")
            n += 1
        seconds = time.perf_counter() - t0
        if n == 0:
            raise NeuroditError("no synthetic volumes to write", out)
        if lengths and lengths != {n}:
            raise NeuroditError(f"{n} volumes but {lengths.pop()} label values per column", out)
        ids = synthetic_ids(n, avoid_ids)  # the same names as the files, checked against avoid_ids
        table = pd.DataFrame({"participant_id": ids,
                              **{k: ["n/a" if v is None else v for v in vals] for k, vals in labels.items()},
                              "synthetic": [1] * n})
        write_participants(table, tmp / "participants.tsv")
        from neurodit.data.maps import write_map

        write_map(tmp, map_name)
        sampling = {"seconds": round(seconds, 3), "seconds_per_volume": round(seconds / n, 4), "n": n,
                    **peak_memory_mb()}
        write_run_info(tmp, meta, seed, n=n, sampling=sampling, **run_extra)
    return Path(out)


def write_synthetic_maps(volumes: Iterable[np.ndarray], maps: Sequence[str],
                         labels: Mapping[str, Sequence[Any]] | None, affine: np.ndarray, out: str | Path, *,
                         meta: dict, seed: int | None = None, overwrite: bool = False,
                         avoid_ids: Collection[str] = (), **run_extra: Any) -> Path:
    """Write synthetic subjects of several maps, an iterable of (M, D, H, W) arrays (map order ``maps``), as a
    multi-map folder (``neurodit.data.maps``): ``out/<map>/`` one synthetic cohort folder per map
    (:func:`write_synthetic_cohort`), the same participant ids and labels in each, so subject k's maps stay
    together; ``out/run.json`` beside them. Atomic as a whole. The subjects are held in memory (M volumes
    each) until every map's folder is written."""
    subjects = [np.asarray(v, dtype=np.float32) for v in volumes]
    for k, v in enumerate(subjects):
        if v.ndim != 4 or v.shape[0] != len(maps):
            raise NeuroditError(f"synthetic subject {k + 1} has shape {v.shape}, expected ({len(maps)}, D, H, W)", out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for c, m in enumerate(maps):
            write_synthetic_cohort((v[c] for v in subjects), labels, affine, tmp / m, meta=meta, seed=seed,
                                   avoid_ids=avoid_ids, map_name=m, maps=list(maps), **run_extra)
        write_run_info(tmp, meta, seed, n=len(subjects), maps=list(maps), **run_extra)
    return Path(out)
