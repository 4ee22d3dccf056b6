"""``neurodit prepare``: validate a cohort, reorient to RAS, resample to one grid, mask, normalise.

Output (PREP_DIR, written atomically: a failed run leaves nothing behind):

- ``volumes.npy``  float32 (N, D, H, W), model range [-1, 1] (``Normalization.to_model``), RAS grid,
  memory-mappable (``np.load(..., mmap_mode="r")``); -1 outside ``mask``.
- ``mask.npy``     bool (D, H, W) brain mask on the grid (see :func:`brain_mask`).
- ``participants.tsv``  the rows kept, same order as ``volumes.npy``; the source NIfTI is in
  ``source_path`` (absolute), missing values are ``n/a``.
- ``prepare.json`` grid, normalisation, source folder, counts, versions, per-file sha256, mask recipe.
- ``run.json``     resolved arguments and versions (``neurodit.io.write_run_info``).

Brain mask choice: real MD maps often carry non-zero fitting noise outside the brain, so the data's
own support cannot be trusted alone; registration-free MNI-space maps also vary in head size (the
phantom's sex effect is partly head size), so the template mask alone would cut real brain. We take
the MNI152 brain mask (nilearn, 2 mm) resampled to the grid, dilate it by ``mask_margin_mm``
(default 8 mm, ~5% of brain length) and intersect it with the voxels where at least one volume is
positive. Inside the mask each volume keeps its own values (its own zeros map to -1).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.data.cohort import (
    _clean_table,
    iter_volumes,
    read_cohort,
    resample_to_grid,
    write_nifti,
    write_participants,
)
from neurodit.data.grid import Grid, make_grid
from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, package_versions, read_json, write_json, write_run_info

VOLUMES, MASK, TABLE, META = "volumes.npy", "mask.npy", "participants.tsv", "prepare.json"
DEFAULT_MASK_MARGIN_MM = 8.0
# A volume whose non-zero voxels cover less than this fraction of the MNI152 brain mask is not in
# MNI space (or is mostly empty): we do not register, so we refuse it.
MIN_MNI_COVERAGE = 0.3


@functools.lru_cache(maxsize=1)
def _mni_brain_mask() -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_brain_mask  # shipped with nilearn, offline

    img = load_mni152_brain_mask(resolution=2)
    return np.asarray(img.get_fdata(), dtype=np.float32), np.asarray(img.affine, dtype=np.float64)


def mni_mask_on_grid(grid: Grid) -> np.ndarray:
    """nilearn's MNI152 brain mask (2 mm) resampled onto ``grid`` (anti-aliased, > 0.5) -> bool (D, H, W)."""
    data, affine = _mni_brain_mask()
    return resample_to_grid(data, affine, grid) > 0.5


def dilate_mm(mask: np.ndarray, grid: Grid, margin_mm: float) -> np.ndarray:
    """Voxels within ``margin_mm`` (Euclidean, in mm, anisotropic voxels respected) of ``mask``."""
    if margin_mm <= 0:
        return mask.copy()
    dist = ndimage.distance_transform_edt(~mask, sampling=grid.voxel_size)
    return dist <= margin_mm


def brain_mask(mni_mask: np.ndarray, support: np.ndarray, grid: Grid, margin_mm: float) -> np.ndarray:
    """Final mask: MNI152 brain mask dilated by ``margin_mm`` AND the data support (any volume > 0)."""
    return dilate_mm(mni_mask, grid, margin_mm) & support


def _table_for_output(table: pd.DataFrame) -> pd.DataFrame:
    # PREP_DIR is not a cohort folder: name the absolute source file ``source_path`` so nobody reads
    # it as the input format's folder-relative ``path``.
    return table.rename(columns={"path": "source_path"})


def prepare(data_dir: str | Path, out: str | Path, shape: Sequence[int] | None = None,
            voxel_size: float | Sequence[float] | None = None, overwrite: bool = False,
            mask_margin_mm: float = DEFAULT_MASK_MARGIN_MM, norm: Normalization | None = None,
            workers: int | None = None, map_name: str | None = None) -> Path:
    """Validate the cohort in ``data_dir`` and write PREP_DIR ``out`` (see module docstring); returns ``out``.

    ``shape`` (D, H, W) and/or ``voxel_size`` (mm) define the grid as in :func:`make_grid`
    (default 2 mm, 96x112x96). Intensities stay in mm²/s until the final affine map to [-1, 1]
    (``norm``, default the map's window: [0, 4e-3] mm²/s for MD / AD / RD, [0, 1] for FA). ``map_name``: the
    scalar map the folder holds (``neurodit.data.maps``); None: its ``map.json``, else md; a name that
    contradicts ``map.json`` is refused. Files are read on ``workers`` threads (default min(4, CPUs)).
    Raises NeuroditError naming the file on any bad input; nothing is left in ``out`` then.
    """
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    out = Path(out)
    cohort = read_cohort(data_dir)
    if map_name is not None:
        from neurodit.data.maps import MAP_FILE, get_map

        map_name = get_map(map_name).name
        if (cohort.data_dir / MAP_FILE).is_file() and cohort.map != map_name:
            raise NeuroditError(f"--map {map_name}, but the folder says it holds {cohort.map}", cohort.data_dir / MAP_FILE)
        cohort = dataclasses.replace(cohort, map=map_name)
    from neurodit.data.maps import get_map

    norm = norm or get_map(cohort.map).normalization()
    if cohort.n_participants < 2:
        raise NeuroditError(f"too few subjects: {cohort.n_participants} participant(s), need at least 2",
                            cohort.data_dir / "participants.tsv")
    grid = make_grid(shape, voxel_size)
    if out.resolve() == cohort.data_dir or cohort.data_dir in out.resolve().parents:
        raise NeuroditError("output folder must not be inside the cohort folder", out)
    mni = mni_mask_on_grid(grid)
    n = len(cohort)
    checksums: dict[str, str] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        vols = np.lib.format.open_memmap(tmp / VOLUMES, mode="w+", dtype=np.float32, shape=(n, *grid.shape))
        support = np.zeros(grid.shape, dtype=bool)
        # Stream one volume at a time: memory stays O(one volume) whatever N is.
        for i, (vol, _, sha) in enumerate(iter_volumes(cohort, grid, workers)):
            src = cohort.paths[i]
            positive = vol > 0
            coverage = float(positive[mni].mean()) if mni.any() else 0.0
            if coverage < MIN_MNI_COVERAGE:
                raise NeuroditError(f"non-zero voxels cover only {coverage:.0%} of the MNI152 brain on the grid "
                                    "(is the volume in MNI space?)", src)
            support |= positive
            vols[i] = norm.to_model(vol)  # (D, H, W) mm²/s -> [-1, 1]
            checksums[os.path.relpath(src, cohort.data_dir)] = sha  # a path column may point outside
        mask = brain_mask(mni, support, grid, mask_margin_mm)
        outside = ~mask
        for i in range(n):
            vols[i][outside] = -1.0
        vols.flush()
        del vols
        np.save(tmp / MASK, mask)
        write_participants(_table_for_output(cohort.table), tmp / TABLE)
        counts: dict[str, Any] = {"volumes": n, "participants": cohort.n_participants}
        for col in ("sex", "diagnosis"):
            vc = cohort.table[col].dropna().value_counts()
            if len(vc):
                counts[col] = {str(k): int(v) for k, v in sorted(vc.items())}
        meta = {
            "map": cohort.map,
            "grid": grid.to_dict(),
            "normalization": norm.to_dict(),
            "source": str(cohort.data_dir),
            "n": n,
            "counts": counts,
            "mask": {"method": "mni152_brain_mask(2mm) resampled, dilated by margin_mm, AND any(volume > 0)",
                     "margin_mm": float(mask_margin_mm), "voxels": int(mask.sum())},
            "resampling": {"orientation": "RAS (nibabel.as_closest_canonical)",
                           "interpolation": "trilinear (scipy.ndimage.affine_transform order 1)",
                           "antialias": "Gaussian, FWHM = sqrt(r^2-1) input voxels, r = target/input step"},
            "versions": package_versions(),
            "checksums": checksums,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        write_json(tmp / META, meta)
        config = {"data_dir": str(cohort.data_dir), "out": str(out), "shape": list(grid.shape),
                  "voxel_size": list(grid.voxel_size), "mask_margin_mm": float(mask_margin_mm),
                  "normalization": norm.to_dict(), "map": cohort.map, "overwrite": overwrite}
        write_run_info(tmp, config, seed=None, stage="prepare")
    return out


def model_to_mm2s(volumes_model_range: Any, norm: Normalization, mask: np.ndarray | None) -> np.ndarray:
    """Model range -> float32 mm²/s for one volume (D, H, W) or a batch (B, D, H, W), numpy or torch:
    clipped to [-1, 1], mapped back with ``norm.to_physical`` and 0 outside ``mask`` (D, H, W) (the
    input format's background; no masking when ``mask`` is None). The one copy of this rule."""
    y = volumes_model_range
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().float().cpu().numpy()
    y = np.asarray(y, dtype=np.float32)
    x = norm.to_physical(np.clip(y, -1.0, 1.0)).astype(np.float32)
    x[x < norm.vmin] = norm.vmin  # float rounding of to_physical(-1) must not leave the range
    if mask is not None:
        x[..., ~np.asarray(mask, dtype=bool)] = 0.0
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A loaded PREP_DIR: ``volumes`` (N, D, H, W) read-only memmap in model range, ``mask`` bool
    (D, H, W), ``table`` (rows in volume order), ``grid``, ``norm``, ``path`` (the folder)."""

    volumes: np.ndarray
    mask: np.ndarray
    table: pd.DataFrame
    grid: Grid
    norm: Normalization
    path: Path
    map: str = "md"  # the scalar map (neurodit.data.maps); prepare.json "map", md before issue 22

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    def to_mm2s(self, volume_model_range: Any) -> np.ndarray:
        """(D, H, W) model-range volume (numpy or torch) -> float32 mm²/s: clipped to [-1, 1], mapped
        back with ``norm.to_physical``, and 0 outside ``mask`` (the input format's background)."""
        y = volume_model_range
        if tuple(y.shape) != self.grid.shape:
            raise NeuroditError(f"volume shape {tuple(y.shape)} does not match the prepared grid "
                                f"{self.grid.shape}")
        return model_to_mm2s(y, self.norm, self.mask)

    def to_nifti(self, volume_model_range: Any, path: str | Path) -> Path:
        """Write one model-range volume as NIfTI in mm²/s on the grid affine (atomic)."""
        return write_nifti(self.to_mm2s(volume_model_range), self.grid.affine, path)


def load_prepared(prep_dir: str | Path) -> Prepared:
    """Open a PREP_DIR written by :func:`prepare` (volumes memory-mapped, read-only)."""
    prep_dir = Path(prep_dir)
    if not prep_dir.is_dir():
        raise NeuroditError("prepared folder not found", prep_dir)
    for name in (VOLUMES, MASK, TABLE, META):
        if not (prep_dir / name).is_file():
            raise NeuroditError(f"missing {name} (not a folder written by neurodit prepare)", prep_dir)
    meta = read_json(prep_dir / META)
    try:
        grid = Grid.from_dict(meta["grid"])
        norm = Normalization.from_dict(meta["normalization"])
    except (KeyError, TypeError) as exc:
        raise NeuroditError(f"missing or bad key {exc}", prep_dir / META) from exc
    try:
        volumes = np.load(prep_dir / VOLUMES, mmap_mode="r", allow_pickle=False)
        mask = np.load(prep_dir / MASK, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NeuroditError(f"cannot read arrays ({exc})", prep_dir) from exc
    if volumes.ndim != 4 or volumes.shape[1:] != grid.shape or volumes.dtype != np.float32:
        raise NeuroditError(f"volumes {volumes.shape} {volumes.dtype} do not match grid {grid.shape}",
                            prep_dir / VOLUMES)
    if mask.shape != grid.shape or mask.dtype != bool:
        raise NeuroditError(f"mask {mask.shape} {mask.dtype} does not match grid {grid.shape}", prep_dir / MASK)
    raw = pd.read_csv(prep_dir / TABLE, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    table = _clean_table(raw.apply(lambda c: c.str.strip()), prep_dir / TABLE).drop(columns=["path"])
    if len(table) != volumes.shape[0]:
        raise NeuroditError(f"{len(table)} rows but {volumes.shape[0]} volumes", prep_dir / TABLE)
    return Prepared(volumes=volumes, mask=mask, table=table.reset_index(drop=True), grid=grid, norm=norm,
                    path=prep_dir, map=str(meta.get("map", "md")))


def subset_prepared(prep_dir: str | Path, participant_ids, out: str | Path, overwrite: bool = False) -> Path:
    """Write a PREP_DIR holding only the rows of ``participant_ids`` (every session of each), in the
    source's order: the same grid, normalisation and mask (the mask is the source's, so a generator
    fitted on the subset draws on the same support), ``prepare.json`` with the kept files' checksums and
    ``subset_of`` (the source folder). How a generator is fitted on a fraction of a cohort's participants
    without preparing it again. NeuroditError naming the source when an id is not in it."""
    prep = load_prepared(prep_dir)
    wanted = {str(p) for p in participant_ids}
    ids = prep.table["participant_id"].astype(str)
    missing = sorted(wanted - set(ids))
    if missing:
        raise NeuroditError(f"participant(s) {', '.join(missing[:3])} not in the prepared folder", prep_dir)
    keep = np.flatnonzero(ids.isin(wanted).to_numpy())
    meta = read_json(Path(prep_dir) / META)
    sums = meta.get("checksums")
    if isinstance(sums, dict) and "source_path" in prep.table:
        kept = {os.path.basename(str(p)) for p in prep.table["source_path"].iloc[keep]}
        meta["checksums"] = {k: v for k, v in sums.items() if os.path.basename(k) in kept}
    meta.update(subset_of=str(Path(prep_dir).resolve()),
                counts={"volumes": int(len(keep)), "participants": len(wanted)})
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.save(tmp / VOLUMES, np.ascontiguousarray(prep.volumes[keep]))  # (n, D, H, W) float32
        np.save(tmp / MASK, prep.mask)
        write_participants(prep.table.iloc[keep], tmp / TABLE)
        write_json(tmp / META, meta)
        write_run_info(tmp, {"prep_dir": str(prep_dir), "participants": sorted(wanted), "out": str(out)},
                       seed=None, stage="subset")
    return Path(out)


def export_prepared(prep_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write a PREP_DIR's volumes back as a cohort folder (``neurodit export``): NIfTI in mm²/s on the
    prepared grid, ``<participant_id>[_<session_id>]_<map>.nii.gz``, plus ``participants.tsv`` and ``run.json``.

    This is the real data exactly as the generator sees it (resampled, masked, clipped to the
    normalisation window), so real-vs-synthetic comparisons differ only by the generator.
    """
    prep = load_prepared(prep_dir)
    table = prep.table.copy()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        names = []
        for i, row in table.iterrows():
            ses = row.get("session_id")
            stem = str(row["participant_id"]) + (f"_{ses}" if isinstance(ses, str) and ses else "")
            name = f"{stem}_{prep.map}.nii.gz"
            prep.to_nifti(prep.volumes[i], tmp / name)
            names.append(name)
        table = table.drop(columns=[c for c in ("source_path",) if c in table])
        table["path"] = names
        write_participants(table, tmp / TABLE)
        from neurodit.data.maps import write_map

        write_map(tmp, prep.map)
        write_run_info(tmp, {"prep_dir": str(Path(prep_dir)), "out": str(out)}, seed=None, stage="export")
    return Path(out)
