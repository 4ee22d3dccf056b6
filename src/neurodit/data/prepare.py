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


def _named_cohort(folder: Path, map_name: str | None):
    """The cohort folder ``folder`` as holding ``map_name`` (None: its ``map.json``, else md); a name that
    contradicts ``map.json`` is refused."""
    from neurodit.data.maps import MAP_FILE, get_map

    cohort = read_cohort(folder)
    if map_name is None:
        return cohort
    map_name = get_map(map_name).name
    if (cohort.data_dir / MAP_FILE).is_file() and cohort.map != map_name:
        raise NeuroditError(f"--map {map_name}, but the folder says it holds {cohort.map}", cohort.data_dir / MAP_FILE)
    return dataclasses.replace(cohort, map=map_name)


def _same_rows(cohorts: Sequence[Any]) -> None:
    """NeuroditError naming the table when the per-map folders do not list the same (participant, session)
    rows in the same order: a subject's maps are kept together by row."""
    def rows(c) -> list[tuple[str, str]]:
        ses = c.table["session_id"] if "session_id" in c.table else [None] * len(c.table)
        return [(str(p), "" if s is None else str(s)) for p, s in zip(c.table["participant_id"], ses, strict=True)]

    first = rows(cohorts[0])
    for c in cohorts[1:]:
        other = rows(c)
        if other != first:
            diff = sorted(set(first) ^ set(other))
            what = f"e.g. {diff[0][0]} is in one and not the other" if diff else "the same rows in another order"
            raise NeuroditError(f"the {c.map} folder does not list the participants of the {cohorts[0].map} folder "
                                f"({what}): a subject's maps must come in the same rows", c.data_dir / "participants.tsv")


def prepare(data_dir: str | Path, out: str | Path, shape: Sequence[int] | None = None,
            voxel_size: float | Sequence[float] | None = None, overwrite: bool = False,
            mask_margin_mm: float = DEFAULT_MASK_MARGIN_MM, norm: Normalization | None = None,
            workers: int | None = None, map_name: str | None = None,
            maps: Sequence[str] | None = None) -> Path:
    """Validate the cohort in ``data_dir`` and write PREP_DIR ``out`` (see module docstring); returns ``out``.

    ``shape`` (D, H, W) and/or ``voxel_size`` (mm) define the grid as in :func:`make_grid`
    (default 2 mm, 96x112x96). Intensities stay in physical units until the final affine map to [-1, 1]
    (``norm``, default the map's window: [0, 4e-3] mm²/s for MD / AD / RD, [0, 1] for FA). ``map_name``: the
    scalar map the folder holds (``neurodit.data.maps``); None: its ``map.json``, else md; a name that
    contradicts ``map.json`` is refused. ``maps`` (e.g. ``("md", "fa")``): ``data_dir`` is a multi-map
    folder (one cohort folder per map, ``data_dir/<map>/``) and each subject's maps are kept together:
    ``volumes.npy`` is then (N, C, D, H, W), channel c the map ``maps[c]`` in its own window (``norm`` does
    not apply), ``prepare.json`` lists ``maps`` and ``normalizations``; one mask serves every map. Files are
    read on ``workers`` threads (default min(4, CPUs)).
    Raises NeuroditError naming the file on any bad input; nothing is left in ``out`` then.
    """
    from neurodit.data.maps import get_map, map_folders, parse_maps

    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    out = Path(out)
    if maps is not None:
        maps = parse_maps(maps)
        if map_name is not None or norm is not None:
            raise NeuroditError("--maps reads one folder per map with its own window: drop --map (and norm)")
        cohorts = [_named_cohort(d, m) for m, d in map_folders(data_dir, maps).items()]
        _same_rows(cohorts)
    else:
        cohorts = [_named_cohort(data_dir, map_name)]
    cohort = cohorts[0]  # the table, counts and the source of the first map stand for the subject's maps
    norms = [norm or get_map(c.map).normalization() for c in cohorts]
    if cohort.n_participants < 2:
        raise NeuroditError(f"too few subjects: {cohort.n_participants} participant(s), need at least 2",
                            cohort.data_dir / "participants.tsv")
    grid = make_grid(shape, voxel_size)
    if out.resolve() == data_dir.resolve() or data_dir.resolve() in out.resolve().parents:
        raise NeuroditError("output folder must not be inside the cohort folder", out)
    mni = mni_mask_on_grid(grid)
    n, several = len(cohort), maps is not None and len(maps) > 1
    checksums: dict[str, str] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        # (N, D, H, W), or (N, C, D, H, W) for several maps: a subject's maps side by side
        vol_shape = (n, len(cohorts), *grid.shape) if several else (n, *grid.shape)
        vols = np.lib.format.open_memmap(tmp / VOLUMES, mode="w+", dtype=np.float32, shape=vol_shape)
        support = np.zeros(grid.shape, dtype=bool)
        for c, (co, nm) in enumerate(zip(cohorts, norms, strict=True)):
            # Stream one volume at a time: memory stays O(one volume) whatever N is.
            for i, (vol, _, sha) in enumerate(iter_volumes(co, grid, workers)):
                src = co.paths[i]
                positive = vol > 0
                coverage = float(positive[mni].mean()) if mni.any() else 0.0
                if coverage < MIN_MNI_COVERAGE:
                    raise NeuroditError(f"non-zero voxels cover only {coverage:.0%} of the MNI152 brain on the grid "
                                        "(is the volume in MNI space?)", src)
                support |= positive
                vols[(i, c) if several else i] = nm.to_model(vol)  # (D, H, W) physical -> [-1, 1]
                checksums[os.path.relpath(src, data_dir)] = sha  # a path column may point outside
        mask = brain_mask(mni, support, grid, mask_margin_mm)
        outside = ~mask
        for i in range(n):
            vols[i][..., outside] = -1.0
        vols.flush()
        del vols
        np.save(tmp / MASK, mask)
        write_participants(_table_for_output(cohort.table), tmp / TABLE)
        counts: dict[str, Any] = {"volumes": n, "participants": cohort.n_participants}
        for col in ("sex", "diagnosis"):
            vc = cohort.table[col].dropna().value_counts()
            if len(vc):
                counts[col] = {str(k): int(v) for k, v in sorted(vc.items())}
        names = [c.map for c in cohorts]
        meta = {
            **maps_meta(dict(zip(names, norms, strict=True))),
            "grid": grid.to_dict(),
            "source": str(data_dir.resolve() if several else cohort.data_dir),
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
        config = {"data_dir": str(data_dir), "out": str(out), "shape": list(grid.shape),
                  "voxel_size": list(grid.voxel_size), "mask_margin_mm": float(mask_margin_mm),
                  "normalization": norms[0].to_dict(), "map": meta["map"], "maps": list(maps) if maps else None,
                  "overwrite": overwrite}
        write_json(tmp / META, meta)
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


def maps_to_physical(volumes_model_range: Any, maps: Sequence[str], norms: Sequence[Normalization],
                     mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """(B, C, D, H, W) or (C, D, H, W) model-range maps (numpy or torch) -> ``{map: (B, D, H, W) physical}``,
    each map through its own window (:func:`model_to_mm2s`) and then made consistent with the others
    (``neurodit.data.maps.make_consistent``: MD >= 0, FA in [0, 1], AD >= RD; 0 outside ``mask``)."""
    from neurodit.data.maps import make_consistent

    y = volumes_model_range
    c_axis = y.ndim - 4  # the channel axis: 0 for one subject, 1 for a batch
    if y.shape[c_axis] != len(maps):
        raise NeuroditError(f"{y.shape[c_axis]} channels for {len(maps)} maps ({', '.join(maps)})")
    out = {m: model_to_mm2s(y[:, c] if c_axis else y[c], nm, mask)
           for c, (m, nm) in enumerate(zip(maps, norms, strict=True))}
    return make_consistent(out, mask)


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A loaded PREP_DIR: ``volumes`` (N, D, H, W) read-only memmap in model range [(N, C, D, H, W) for a
    several-map folder: ``maps`` names the channels, ``norms`` their windows], ``mask`` bool (D, H, W),
    ``table`` (rows in volume order), ``grid``, ``norm`` (the first map's), ``path`` (the folder)."""

    volumes: np.ndarray
    mask: np.ndarray
    table: pd.DataFrame
    grid: Grid
    norm: Normalization
    path: Path
    map: str = "md"  # the scalar map (neurodit.data.maps); prepare.json "map", md before issue 22; "md+fa" for several
    maps: tuple[str, ...] = ()  # several maps: the channel names; () for one map
    norms: tuple[Normalization, ...] = ()  # several maps: each channel's window

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def channels(self) -> int:
        """Maps per voxel: 1, or len(maps) for a several-map folder."""
        return len(self.maps) or 1

    def require_one_map(self, stage: str) -> None:
        """NeuroditError naming the folder when it holds several maps: ``stage`` works on one map."""
        if self.maps:
            raise NeuroditError(f"{stage} takes a one-map prepared folder; this one holds {', '.join(self.maps)} "
                                "(prepare one map with --map, or use the dit / ddpm3d generators)", self.path)

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
    maps, norms = maps_of(meta, prep_dir / META)
    want = ((len(maps),) if maps else ()) + tuple(grid.shape)
    if volumes.shape[1:] != want or volumes.dtype != np.float32:
        raise NeuroditError(f"volumes {volumes.shape} {volumes.dtype} do not match grid {grid.shape}"
                            + (f" with {len(maps)} maps" if maps else ""), prep_dir / VOLUMES)
    if mask.shape != grid.shape or mask.dtype != bool:
        raise NeuroditError(f"mask {mask.shape} {mask.dtype} does not match grid {grid.shape}", prep_dir / MASK)
    raw = pd.read_csv(prep_dir / TABLE, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    table = _clean_table(raw.apply(lambda c: c.str.strip()), prep_dir / TABLE).drop(columns=["path"])
    if len(table) != volumes.shape[0]:
        raise NeuroditError(f"{len(table)} rows but {volumes.shape[0]} volumes", prep_dir / TABLE)
    return Prepared(volumes=volumes, mask=mask, table=table.reset_index(drop=True), grid=grid, norm=norm,
                    path=prep_dir, map=str(meta.get("map", "md")), maps=maps, norms=norms)


def maps_meta(norms: dict[str, Normalization]) -> dict[str, Any]:
    """The ``prepare.json`` keys that say which maps a PREP_DIR holds: ``map`` (``"md"``, ``"md+fa"``) and
    ``normalization`` (the first map's), plus ``maps`` and ``normalizations`` for several (read back by
    :func:`maps_of`)."""
    names = list(norms)
    meta: dict[str, Any] = {"map": "+".join(names), "normalization": norms[names[0]].to_dict()}
    if len(names) > 1:
        meta.update(maps=names, normalizations={m: n.to_dict() for m, n in norms.items()})
    return meta


def maps_of(meta: dict[str, Any], where: str | Path) -> tuple[tuple[str, ...], tuple[Normalization, ...]]:
    """``prepare.json``'s several maps (a PREP_DIR's, or its copy in a run folder) -> (names, windows); ((), ())
    for one map. A custom map's window is registered on the way (``neurodit.data.maps.custom_map``), so
    ``make_consistent`` knows it in any process. NeuroditError naming ``where`` on a bad entry."""
    from neurodit.data.maps import BUILTIN, custom_map

    maps = tuple(str(m) for m in meta.get("maps") or ())
    try:
        norms = tuple(Normalization.from_dict(meta["normalizations"][m]) for m in maps)
    except (KeyError, TypeError) as exc:
        raise NeuroditError(f"missing or bad normalizations entry {exc}", where) from exc
    for m, nm in zip(maps, norms, strict=True):
        if m not in BUILTIN:
            custom_map(m, nm.unit, (nm.vmin, nm.vmax), where)
    return maps, norms


def write_prepared(out: str | Path, volumes: np.ndarray, mask: np.ndarray, table: pd.DataFrame, grid: Grid,
                   norms: dict[str, Normalization], source: str, extra: dict[str, Any] | None = None,
                   overwrite: bool = False) -> Path:
    """A PREP_DIR from arrays already in model range (the format's one writer besides :func:`prepare`, for
    volumes that come from no cohort folder: ``neurodit pretrain``'s natural-image crops). ``norms``: one map
    -> ``volumes`` (N, D, H, W); several (e.g. red, green, blue) -> (N, C, D, H, W) in ``norms``' order.
    ``table`` needs ``participant_id``; ``extra`` joins ``prepare.json``. Atomic."""
    want = (len(volumes), *((len(norms),) if len(norms) > 1 else ()), *grid.shape)
    if tuple(volumes.shape) != want or mask.shape != grid.shape:
        raise NeuroditError(f"write_prepared: volumes {volumes.shape} / mask {mask.shape} do not fit {want}", out)
    meta = {**maps_meta(norms), "grid": grid.to_dict(), "source": source, "n": len(volumes),
            "counts": {"volumes": len(volumes)}, "versions": package_versions(), **(extra or {})}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.save(tmp / VOLUMES, np.ascontiguousarray(volumes, dtype=np.float32))
        np.save(tmp / MASK, np.asarray(mask, dtype=bool))
        write_participants(table, tmp / TABLE)
        write_json(tmp / META, meta)
    return Path(out)


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
        np.save(tmp / VOLUMES, np.ascontiguousarray(prep.volumes[keep]))  # (n, [C,] D, H, W) float32
        np.save(tmp / MASK, prep.mask)
        write_participants(prep.table.iloc[keep], tmp / TABLE)
        write_json(tmp / META, meta)
        write_run_info(tmp, {"prep_dir": str(prep_dir), "participants": sorted(wanted), "out": str(out)},
                       seed=None, stage="subset")
    return Path(out)


def export_prepared(prep_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write a PREP_DIR's volumes back as a cohort folder (``neurodit export``): NIfTI in physical units on the
    prepared grid, ``<participant_id>[_<session_id>]_<map>.nii.gz``, plus ``participants.tsv``, ``map.json``
    and ``run.json``; a several-map PREP_DIR as a multi-map folder (``OUT/<map>/``, one cohort folder per map,
    the maps made consistent as sampled ones are: ``maps_to_physical``).

    This is the real data exactly as the generator sees it (resampled, masked, clipped to the
    normalisation window), so real-vs-synthetic comparisons differ only by the generator.
    """
    from neurodit.data.maps import write_map

    prep = load_prepared(prep_dir)
    table = prep.table.copy()
    stems = []
    for _, row in table.iterrows():
        ses = row.get("session_id")
        stems.append(str(row["participant_id"]) + (f"_{ses}" if isinstance(ses, str) and ses else ""))
    table = table.drop(columns=[c for c in ("source_path",) if c in table])
    with atomic_dir(out, overwrite=overwrite) as tmp:
        folders = {m: tmp / m for m in prep.maps} or {prep.map: tmp}
        for d in folders.values():
            d.mkdir(exist_ok=True)
        for i, stem in enumerate(stems):
            if prep.maps:  # (C, D, H, W) model range -> {map: (D, H, W) physical}
                vols = maps_to_physical(prep.volumes[i], prep.maps, prep.norms, prep.mask)
            else:
                vols = {prep.map: prep.to_mm2s(prep.volumes[i])}
            for m, vol in vols.items():
                write_nifti(vol, prep.grid.affine, folders[m] / f"{stem}_{m}.nii.gz")
        for m, d in folders.items():
            write_participants(table.assign(path=[f"{stem}_{m}.nii.gz" for stem in stems]), d / TABLE)
            write_map(d, m)
            write_run_info(d, {"prep_dir": str(Path(prep_dir)), "out": str(out), "map": m}, seed=None, stage="export")
        if prep.maps:
            write_run_info(tmp, {"prep_dir": str(Path(prep_dir)), "out": str(out), "maps": list(prep.maps)},
                           seed=None, stage="export")
    return Path(out)
