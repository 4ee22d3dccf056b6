"""Read and validate a cohort folder (the input format of docs/ARCHITECTURE.md) and load its volumes.

A cohort folder holds ``participants.tsv`` (BIDS-style, tab-separated) and one 3D NIfTI mean
diffusivity (MD) map per row, in mm²/s, in MNI space. A row finds its file through the optional
``path`` column (relative to the folder) or by the pattern ``<participant_id>[_<session_id>]*.nii[.gz]``.
Every problem is a :class:`~neurodit.errors.NeuroditError` whose one-line message names the file.

Volumes are reoriented to RAS (``nibabel.as_closest_canonical``) and resampled onto a
:class:`~neurodit.data.grid.Grid` with trilinear interpolation after a Gaussian anti-aliasing filter
whose width matches the target voxel size (see :func:`resample_to_grid`). No registration is done.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import hashlib
import itertools
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.data.grid import Grid
from neurodit.errors import NeuroditError
from neurodit.io import (
    atomic_write_text,
    write_nifti,  # noqa: F401  (re-exported: the one NIfTI writer)
)

TABLE_NAME = "participants.tsv"
STANDARD_COLUMNS = ("participant_id", "session_id", "sex", "age", "diagnosis", "synthetic", "path")
MISSING = {"", "n/a", "na", "nan", "none"}  # BIDS writes "n/a"; the others are common in hand-made tables
SEX_LABELS = {"f": "F", "female": "F", "m": "M", "male": "M"}
DIAGNOSIS_LABELS = {"cn": "CN", "mci": "MCI", "ad": "AD"}
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclasses.dataclass(frozen=True, eq=False)
class Cohort:
    """A validated cohort: ``table`` has one row per volume, columns :data:`STANDARD_COLUMNS`
    (``path`` absolute; missing labels are None / NaN; ``synthetic`` 0/1) plus any extra columns."""

    table: pd.DataFrame
    data_dir: Path
    map: str = "md"  # the scalar map its volumes hold (neurodit.data.maps: map.json, else md)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.table["path"]]

    @property
    def n_participants(self) -> int:
        return int(self.table["participant_id"].nunique())


# ----------------------------------------------------------------------------------------- table
def _is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def _read_table(tsv: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError as exc:
        raise NeuroditError("table is empty (expected a header with participant_id)", tsv) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NeuroditError(f"not a readable tab-separated table ({first})", tsv) from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "participant_id" not in df.columns:
        hint = " (the file looks comma-separated; use tabs)" if "," in ",".join(df.columns) else ""
        raise NeuroditError(f"missing required column participant_id (columns: {', '.join(df.columns)}){hint}",
                            tsv)
    if len(set(df.columns)) != len(df.columns):
        raise NeuroditError("duplicate column names in header", tsv)
    if len(df) == 0:
        raise NeuroditError("table has no rows", tsv)
    return df.apply(lambda col: col.str.strip())


def _clean_table(df: pd.DataFrame, tsv: Path) -> pd.DataFrame:
    """Check and normalise the label columns; returns a new frame with every standard column."""
    out = pd.DataFrame(index=df.index)
    line = {i: i + 2 for i in df.index}  # header is line 1

    ids = df["participant_id"]
    for i, pid in ids.items():
        if _is_missing(pid):
            raise NeuroditError(f"line {line[i]}: empty participant_id", tsv)
        if any(ch in pid for ch in "/\\") or any(ch.isspace() for ch in pid):
            raise NeuroditError(f"line {line[i]}: participant_id '{pid}' contains a path separator or space",
                                tsv)
    out["participant_id"] = ids

    def optional(col: str) -> pd.Series:
        if col not in df.columns:
            return pd.Series([None] * len(df), index=df.index, dtype=object)
        return df[col].map(lambda v: None if _is_missing(v) else v).astype(object)

    out["session_id"] = optional("session_id")
    key = list(zip(out["participant_id"], out["session_id"].fillna(""), strict=True))
    seen: dict[tuple[str, str], int] = {}
    for i, k in zip(df.index, key, strict=True):
        if k in seen:
            ses = f" session {k[1]}" if k[1] else ""
            raise NeuroditError(f"duplicate participant_id {k[0]}{ses} on lines {seen[k]} and {line[i]}", tsv)
        seen[k] = line[i]

    for col, labels in (("sex", SEX_LABELS), ("diagnosis", DIAGNOSIS_LABELS)):
        vals = optional(col)
        for i, v in vals.items():
            if v is not None and v.lower() not in labels:
                allowed = "/".join(sorted(set(labels.values()), reverse=col == "sex"))
                raise NeuroditError(f"line {line[i]} ({ids[i]}): unknown {col} label '{v}' (expected {allowed})",
                                    tsv)
        out[col] = vals.map(lambda v, lab=labels: None if v is None else lab[v.lower()]).astype(object)

    # Sessions of one participant are one person: a sex that differs between their rows is a table error
    # (diagnosis and age may change between visits).
    first_sex: dict[str, tuple[str, int]] = {}
    for i, pid, sex in zip(df.index, out["participant_id"], out["sex"], strict=True):
        if sex is None:
            continue
        if pid in first_sex and first_sex[pid][0] != sex:
            raise NeuroditError(f"conflicting rows for participant_id {pid}: sex {first_sex[pid][0]} on line "
                                f"{first_sex[pid][1]} but {sex} on line {line[i]}", tsv)
        first_sex.setdefault(pid, (sex, line[i]))

    ages = optional("age")
    age_vals = []
    for i, v in ages.items():
        try:
            a = float(v) if v is not None else float("nan")
        except ValueError:
            raise NeuroditError(f"line {line[i]} ({ids[i]}): age '{v}' is not a number", tsv) from None
        if v is not None and not (np.isfinite(a) and 0 <= a < 150):
            raise NeuroditError(f"line {line[i]} ({ids[i]}): age {v} out of range [0, 150) years", tsv)
        age_vals.append(a)
    out["age"] = np.asarray(age_vals, dtype=np.float64)

    syn = optional("synthetic")
    for i, v in syn.items():
        if v is not None and v not in ("0", "1"):
            raise NeuroditError(f"line {line[i]} ({ids[i]}): synthetic must be 0 or 1, got '{v}'", tsv)
    out["synthetic"] = syn.map(lambda v: 0 if v is None else int(v)).astype(np.int64)
    out["path"] = optional("path")
    for col in df.columns:  # keep extra columns (e.g. site, scanner) untouched
        if col not in out.columns:
            out[col] = optional(col)
    out = out[list(STANDARD_COLUMNS) + [c for c in out.columns if c not in STANDARD_COLUMNS]]
    for col in out.columns:  # missing text is None (not NaN) in every object column
        if out[col].dtype == object:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def read_participants(tsv: str | Path) -> pd.DataFrame:
    """A ``participants.tsv`` alone (no NIfTI files needed), checked and normalised as :func:`read_cohort`
    does (sex F/M, age float years or NaN, missing text None); NeuroditError naming the file."""
    tsv = Path(tsv).expanduser()
    if tsv.is_dir():  # a cohort folder stands for its table
        tsv = tsv / TABLE_NAME
    if not tsv.is_file():
        raise NeuroditError("participants table not found", tsv)
    return _clean_table(_read_table(tsv), tsv)


def write_participants(table: pd.DataFrame, path: str | Path, float_format: str | None = None) -> Path:
    """Write ``table`` as a participants-style TSV at ``path`` (atomic): the package's one table format.

    Tab-separated, no index, missing values ``n/a`` (BIDS; :func:`read_cohort` reads them back as
    missing), ``\\n`` line ends on every platform, UTF-8. Floats keep full precision unless
    ``float_format`` (e.g. ``"%.6g"``) asks otherwise: the phantom's hidden-variable table uses it so its
    bytes stay short and stable.
    """
    text = table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n", float_format=float_format)
    return atomic_write_text(path, text)


# ----------------------------------------------------------------------------------------- files
def _stem(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _nifti_files(data_dir: Path) -> list[Path]:
    files = []
    for p in data_dir.rglob("*"):
        rel = p.relative_to(data_dir)
        if any(part.startswith(".") for part in rel.parts):  # hidden / partial outputs
            continue
        if p.is_file() and p.name.endswith(NIFTI_SUFFIXES):
            files.append(p)
    return sorted(files)


def _prefixes(pid: str, ses: str | None) -> list[str]:
    if ses is None:
        return [pid]
    out = [f"{pid}_{ses}"]
    if not ses.startswith("ses-"):  # BIDS spells the file entity ses-<label>
        out.append(f"{pid}_ses-{ses}")
    return out


def read_cohort(data_dir: str | Path) -> Cohort:
    """Read ``data_dir/participants.tsv`` and pair each row with its NIfTI file.

    Raises NeuroditError (naming the file) for: a missing/empty folder, a missing or unreadable
    table, no ``participant_id`` column, duplicate (participant_id, session_id), unknown sex
    (F/M, female/male) or diagnosis (CN/MCI/AD) labels, non-numeric age, rows with no file (or
    several candidate files), and NIfTI files with no row. Volume contents are checked on load.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.exists():
        raise NeuroditError("cohort folder not found", data_dir)
    if not data_dir.is_dir():
        raise NeuroditError("not a folder (expected a cohort folder with participants.tsv)", data_dir)
    tsv = data_dir / TABLE_NAME
    files = _nifti_files(data_dir)
    if not tsv.is_file():
        if not any(data_dir.iterdir()):
            raise NeuroditError("cohort folder is empty (expected participants.tsv and NIfTI volumes)",
                                data_dir)
        from neurodit.data.maps import map_folders

        several = map_folders(data_dir)
        if several:  # a multi-map folder: this stage takes one map (prepare --maps, evaluate take several)
            raise NeuroditError(f"a multi-map folder ({', '.join(several)}): this step takes one map's cohort folder, "
                                f"e.g. {data_dir / next(iter(several))}", data_dir)
        raise NeuroditError(f"missing {TABLE_NAME} (found {len(files)} NIfTI files)", tsv)
    table = _clean_table(_read_table(tsv), tsv)
    if not files and table["path"].isna().all():
        raise NeuroditError(f"no NIfTI volumes (.nii/.nii.gz) in the folder for the {len(table)} rows", data_dir)

    resolved: dict[int, Path] = {}
    owner: dict[Path, int] = {}

    def claim(i: int, f: Path) -> None:
        if f in owner:
            a, b = table.loc[owner[f], "participant_id"], table.loc[i, "participant_id"]
            raise NeuroditError(f"file is claimed by two rows ({a} on line {owner[f] + 2}, {b} on line {i + 2})", f)
        owner[f] = i
        resolved[i] = f

    for i, rel in table["path"].items():  # explicit paths first
        if rel is None:
            continue
        # normpath, not resolve(): a symlinked file must stay the same path that the folder scan sees.
        f = Path(os.path.normpath(data_dir / rel))
        if not f.is_file():
            raise NeuroditError(f"line {i + 2} ({table.loc[i, 'participant_id']}): row has no file: "
                                f"path '{rel}' does not exist", tsv)
        claim(i, f)

    # Index every file by each of its "_"-boundary prefixes (sub-002_S_0295_md -> sub-002, sub-002_S, ...):
    # a row's candidates (stem == prefix, or stem starts with prefix + "_") are then one dict look-up per
    # prefix, linear in the table size
    # instead of rows x files (100k rows: seconds, not hours).
    by_prefix: dict[str, list[Path]] = collections.defaultdict(list)
    for f in files:
        if f in owner:
            continue
        parts = _stem(f.name).split("_")
        for k in range(1, len(parts) + 1):
            by_prefix["_".join(parts[:k])].append(f)
    for i, pid, ses in zip(table.index, table["participant_id"], table["session_id"], strict=True):
        if i in resolved:
            continue
        cands = sorted({f for p in _prefixes(pid, ses) for f in by_prefix.get(p, ())})
        label = pid + (f" session {ses}" if ses else "")
        if not cands:
            pattern = f"{_prefixes(pid, ses)[0]}[_*].nii[.gz]"
            raise NeuroditError(f"line {i + 2} ({label}): row has no file (no {pattern} in {data_dir})", tsv)
        if len(cands) > 1:
            names = ", ".join(c.name for c in cands[:3])
            raise NeuroditError(f"line {i + 2} ({label}): several files match ({names}); "
                                "add session_id or a path column", tsv)
        claim(i, cands[0])

    for f in files:
        if f not in owner:
            raise NeuroditError(f"file has no row in {TABLE_NAME}", f)

    table["path"] = [str(resolved[i]) for i in table.index]
    from neurodit.data.maps import read_map

    return Cohort(table=table.reset_index(drop=True), data_dir=data_dir, map=read_map(data_dir))


# ----------------------------------------------------------------------------------------- volumes
@dataclasses.dataclass(frozen=True, eq=False)
class LoadedVolume:
    """One checked volume in RAS orientation: ``data`` (X, Y, Z) float32 mm²/s, ``affine`` 4x4."""

    data: np.ndarray
    affine: np.ndarray
    sha256: str


def load_nifti_3d(path: str | Path, canonical: bool = True) -> LoadedVolume:
    """Read any 3D NIfTI-1/2 (``.nii`` or ``.nii.gz``) as float32 with its sha256; raise NeuroditError
    if it is unreadable, not 3D (a trailing axis of length 1 is dropped) or non-finite.

    ``canonical`` reorients to RAS (the data layer always does); tiling keeps the stored orientation so
    that tile -> untile returns the very same voxels and affine.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NeuroditError(f"cannot read file ({exc.strerror})", path) from exc
    sha = hashlib.sha256(raw).hexdigest()
    try:
        # Parse from the bytes we hashed: the checksum is then exactly of what was loaded.
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        img = None
        for klass in (nib.Nifti1Image, nib.Nifti2Image):
            try:
                img = klass.from_bytes(raw)
                break
            except Exception:  # noqa: BLE001 - try the next NIfTI flavour, report below
                continue
        if img is None:
            raise ValueError("no NIfTI-1/2 header")
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            img = img.slicer[..., 0]
            shape = img.shape
        if len(shape) != 3:
            raise NeuroditError(f"{len(shape)}D volume (shape {'x'.join(map(str, shape))}), expected 3D", path)
        if canonical:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except NeuroditError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, TypeError, IndexError,
            nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NeuroditError(f"not a readable NIfTI file ({type(exc).__name__}: {first})", path) from exc
    if min(data.shape) < 2:
        raise NeuroditError(f"degenerate volume (shape {'x'.join(map(str, data.shape))}), expected 3D", path)
    finite = np.isfinite(data)
    if not finite.all():
        raise NeuroditError(f"{int((~finite).sum())} NaN/Inf voxels", path)
    return LoadedVolume(data=data, affine=np.asarray(img.affine, dtype=np.float64), sha256=sha)


def read_nifti(path: str | Path, map_name: str = "md") -> LoadedVolume:
    """Read one 3D scalar map, reoriented to RAS, with its sha256; raise NeuroditError if it is corrupt,
    not 3D, non-finite (see :func:`load_nifti_3d`), all zero, or not in the map's unit
    (:meth:`neurodit.data.maps.MapSpec.check`: MD in mm²/s by default)."""
    from neurodit.data.maps import get_map

    vol = load_nifti_3d(path, canonical=True)
    data = vol.data
    if not data.any():
        raise NeuroditError("volume is all zero", path)
    get_map(map_name).check(data, path)
    return vol


def antialias_sigma(affine_in: np.ndarray, grid: Grid) -> np.ndarray:
    """Gaussian sigma (input voxels, per input axis) applied before resampling onto ``grid``.

    The filter's FWHM is set so that the input resolution combined with the filter matches the
    target voxel: FWHM_filter = sqrt(r² - 1) input voxels, r = target step / input step along that
    axis, sigma = FWHM / (2 sqrt(2 ln 2)). r <= 1 (same size or upsampling) gives no smoothing.
    A 2 mm -> 6 mm step (r = 3) gives sigma 1.2 voxels: the input Nyquist frequency is damped by
    ~1e-3 and the target Nyquist by ~0.45.
    """
    m = np.linalg.inv(affine_in) @ grid.affine
    # m[i, j]: input-voxel displacement along axis i per grid step along axis j.
    r = np.abs(m[:3, :3]).max(axis=1)
    return np.sqrt(np.clip(r**2 - 1.0, 0.0, None)) / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def resample_to_grid(data: np.ndarray, affine: np.ndarray, grid: Grid) -> np.ndarray:
    """Resample ``data`` (X, Y, Z) with voxel->world ``affine`` onto ``grid`` -> (D, H, W) float32.

    Anti-aliasing Gaussian (:func:`antialias_sigma`) then trilinear interpolation
    (``scipy.ndimage.affine_transform``, order 1, zero outside the input field of view).
    """
    m = np.linalg.inv(affine) @ grid.affine  # grid voxel -> input voxel
    sigma = antialias_sigma(affine, grid)
    src = data.astype(np.float32, copy=False)
    if np.any(sigma > 0.05):
        src = ndimage.gaussian_filter(src, sigma=sigma, mode="constant", cval=0.0, truncate=3.0)
    out = ndimage.affine_transform(src, m[:3, :3], offset=m[:3, 3], output_shape=grid.shape,
                                   order=1, mode="constant", cval=0.0, prefilter=False)
    return out.astype(np.float32, copy=False)


def _read_and_resample(path: Path, grid: Grid | None, map_name: str = "md") -> LoadedVolume:
    vol = read_nifti(path, map_name)
    if grid is None:
        return vol
    return dataclasses.replace(vol, data=resample_to_grid(vol.data, vol.affine, grid), affine=grid.affine)


def _ordered_map(fn, items: list, workers: int) -> Iterator:
    """``map(fn, items)`` in order on ``workers`` threads, at most 2*workers results in flight
    (gzip inflation and most of numpy/scipy release the GIL, so threads overlap on 2+ cores)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pending: collections.deque[Future] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            it = iter(items)
            for item in itertools.islice(it, 2 * workers):
                pending.append(pool.submit(fn, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(it, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for f in pending:
                f.cancel()


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def iter_volumes(cohort: Cohort, grid: Grid | None = None,
                 workers: int | None = None) -> Iterator[tuple[np.ndarray, Grid, str]]:
    """Yield ``(volume (D, H, W) float32 mm²/s, grid, sha256)`` per row of ``cohort.table``, in order.

    ``grid=None``: every volume must already be on one grid (the first file's, after RAS
    reorientation); a volume with another shape or affine raises NeuroditError naming it.
    Files are read and resampled on ``workers`` threads (default: min(4, CPU count)).
    """
    ref: Grid | None = grid
    first: Path | None = None
    workers = default_workers() if workers is None else workers
    paths = cohort.paths
    fn = functools.partial(_read_and_resample, grid=grid, map_name=cohort.map)
    for p, vol in zip(paths, _ordered_map(fn, paths, workers), strict=True):
        if grid is None:
            here = Grid(vol.data.shape, vol.affine)
            if ref is None:
                ref, first = here, p
            elif not ref.same_as(here):
                what = ("shape " + "x".join(map(str, here.shape))) if here.shape != ref.shape else "affine"
                raise NeuroditError(f"{what} differs from {first.name} (inputs must share one grid; "
                                    "run prepare to resample)", p)
            yield vol.data, ref, vol.sha256
        else:
            yield vol.data, grid, vol.sha256


def load_volumes(cohort: Cohort, grid: Grid | None = None,
                 out: str | Path | None = None) -> tuple[np.ndarray, Grid]:
    """All volumes of ``cohort`` as ``(N, D, H, W)`` float32 in mm²/s on ``grid`` (RAS), plus the grid.

    ``grid=None`` means the inputs must already share one grid (used by evaluation of samples).
    ``out``: write the volumes one by one into a float32 ``.npy`` file there instead of stacking them in
    memory, and return it as a read-only ``np.memmap`` (memory flat in N; evaluate's scratch files).
    """
    if out is None:
        vols: list[np.ndarray] = []
        out_grid = grid
        for vol, g, _ in iter_volumes(cohort, grid):
            vols.append(vol)
            out_grid = g
        if not vols:
            raise NeuroditError("cohort has no volumes", cohort.data_dir)
        assert out_grid is not None
        return np.stack(vols).astype(np.float32, copy=False), out_grid
    n = len(cohort.table)
    if n == 0:
        raise NeuroditError("cohort has no volumes", cohort.data_dir)
    # plain file writes, not a writable memmap: the pages a memmap writes stay in this process's resident
    # set until it is unmapped (peak RSS would grow with N); written file pages are only page cache
    out_grid = grid
    with open(out, "wb") as fh:
        for i, (vol, g, _) in enumerate(iter_volumes(cohort, grid)):
            if i == 0:  # the shape is known after the first volume
                np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                          "fortran_order": False, "shape": (n, *vol.shape)})
                out_grid = g
            fh.write(np.ascontiguousarray(vol, dtype=np.float32).tobytes())
    assert out_grid is not None
    return np.load(out, mmap_mode="r"), out_grid
