"""``neurodit dti``: diffusion-tensor maps (MD, FA, AD, RD) from diffusion-weighted images (DWI).

The tensor model (Basser, Mattiello & LeBihan 1994, "MR diffusion tensor spectroscopy and imaging",
Biophys. J. 66:259-267) is fitted per voxel with dipy (Garyfallidis et al. 2014, Front. Neuroinform.
8:8): ``dipy.reconst.dti.TensorModel`` (weighted least squares) on a ``gradient_table`` with b in s/mm²,
so the eigenvalues, hence MD / AD / RD, come out in mm²/s. FA is unitless in [0, 1]
(Basser & Pierpaoli 1996, J. Magn. Reson. B 111:209-219). Without a mask the brain is found by
``dipy.segment.mask.median_otsu`` on the b0 volumes. Every map is 0 outside the mask.

Two layers:

- :func:`fit_tensor` (pure, arrays in, arrays out) and :func:`check_gradients` / :func:`brain_mask`;
- the file layer: :func:`dti_file` (one DWI -> ``OUT/{md,fa,ad,rd,mask}.nii.gz``) and :func:`dti_folder`
  (a BIDS-like folder -> ``OUT/{md,fa,ad,rd}/``, each a cohort folder that
  :func:`neurodit.data.cohort.read_cohort` reads). Outputs are built atomically; inputs are only read.

The DWI keeps its stored orientation (no reorientation to RAS): the b-vectors of FSL-style ``.bvec``
files are given in the image's voxel axes, so reorienting the image would silently mismatch them.
Maps are written on the DWI's affine.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from neurodit.errors import NeuroditError

MAPS = ("md", "fa", "ad", "rd")
# Volumes with b at or below this are b0 (dipy's default b0_threshold): scanners store "b0" as b = 0..50.
B0_THRESHOLD = 50.0  # s/mm²
# A diffusion-weighted volume's b-vector must have unit length within this: text files keep ~6 digits, and
# some converters leave norms of 0.98-1.02; a norm far from 1 means a wrong file or column layout.
BVEC_NORM_TOL = 0.1
# The tensor has 6 unknowns (plus S0): fewer diffusion-weighted volumes cannot determine it.
MIN_DW_VOLUMES = 6
DESCRIPTIONS = {"md": "MD mm2/s", "fa": "FA unitless", "ad": "AD mm2/s", "rd": "RD mm2/s", "mask": "brain mask"}
DWI_SUFFIXES = (".nii.gz", ".nii")


# ----------------------------------------------------------------------------------------- gradients
def _read_text_matrix(path: Path) -> np.ndarray:
    """A whitespace-separated numeric text file as a float64 2D array; NeuroditError naming the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NeuroditError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuroditError(f"cannot read file ({type(exc).__name__})", path) from exc
    rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise NeuroditError("file is empty", path)
    if len({len(r) for r in rows}) != 1:
        raise NeuroditError("rows have different numbers of values", path)
    try:
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise NeuroditError(f"not a numeric text file ({exc})", path) from None


def read_bvals(path: str | Path) -> np.ndarray:
    """b-values (N,) in s/mm² from an FSL-style ``.bval`` (one row or one column)."""
    path = Path(path)
    m = _read_text_matrix(path)
    if min(m.shape) != 1:
        raise NeuroditError(f"expected one row or one column of b-values, got {m.shape[0]}x{m.shape[1]}", path)
    return m.ravel()


def read_bvecs(path: str | Path) -> np.ndarray:
    """b-vectors (N, 3) from a ``.bvec`` text file in either layout: 3xN (FSL) or Nx3.

    A 3x3 file is read as FSL's 3xN (rows x, y, z), the convention of dcm2niix and FSL.
    """
    path = Path(path)
    m = _read_text_matrix(path)
    if m.shape[0] == 3:
        return m.T.copy()
    if m.shape[1] == 3:
        return m
    raise NeuroditError(f"expected 3 rows (3xN) or 3 columns (Nx3) of b-vectors, got {m.shape[0]}x{m.shape[1]}",
                        path)


def check_gradients(bvals: np.ndarray, bvecs: np.ndarray, n_volumes: int, *, bval_path: str | Path = "bval",
                    bvec_path: str | Path = "bvec") -> tuple[np.ndarray, np.ndarray]:
    """Check b-values (N,) and b-vectors (N, 3) against a DWI of ``n_volumes`` volumes; returns them cleaned:
    b0 vectors set to 0 (some files store NaN there), diffusion-weighted ones scaled to unit length.

    NeuroditError (naming the file) for: a count other than ``n_volumes``, negative or non-finite b, no b0
    volume (b <= :data:`B0_THRESHOLD`), fewer than :data:`MIN_DW_VOLUMES` diffusion-weighted volumes, and a
    diffusion-weighted b-vector whose length is not 1 within :data:`BVEC_NORM_TOL`.
    """
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    bvecs = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    if len(bvals) != n_volumes:
        raise NeuroditError(f"{len(bvals)} b-values but the DWI has {n_volumes} volumes (4th dimension)", bval_path)
    if len(bvecs) != n_volumes:
        raise NeuroditError(f"{len(bvecs)} b-vectors but the DWI has {n_volumes} volumes (4th dimension)",
                            bvec_path)
    if not np.isfinite(bvals).all() or (bvals < 0).any():
        raise NeuroditError("b-values must be finite and >= 0 (s/mm²)", bval_path)
    b0 = bvals <= B0_THRESHOLD
    if not b0.any():
        raise NeuroditError(f"no b0 volume (b <= {B0_THRESHOLD:g} s/mm²; smallest b is {bvals.min():g})", bval_path)
    if (~b0).sum() < MIN_DW_VOLUMES:
        raise NeuroditError(f"{int((~b0).sum())} diffusion-weighted volumes (b > {B0_THRESHOLD:g}); the tensor "
                            f"needs at least {MIN_DW_VOLUMES}", bval_path)
    norms = np.linalg.norm(bvecs, axis=1)  # (N,), NaN for a NaN vector
    bad = ~b0 & ~(np.abs(norms - 1.0) <= BVEC_NORM_TOL)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise NeuroditError(f"{int(bad.sum())} b-vectors with b > {B0_THRESHOLD:g} are not unit length (volume {i}: "
                            f"length {norms[i]:.3g}, b = {bvals[i]:g}); wrong file or layout?", bvec_path)
    clean = np.zeros_like(bvecs)
    clean[~b0] = bvecs[~b0] / norms[~b0, None]
    return bvals, clean


# ----------------------------------------------------------------------------------------- fitting (pure)
def brain_mask(dwi: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Brain mask (X, Y, Z) bool of a DWI (X, Y, Z, N) by median filtering + Otsu threshold of the mean b0
    (``dipy.segment.mask.median_otsu``, dipy's defaults: radius 4, 4 passes)."""
    from dipy.segment.mask import median_otsu

    b0_idx = np.flatnonzero(np.asarray(bvals) <= B0_THRESHOLD)
    with np.errstate(invalid="ignore", divide="ignore"):  # dipy's Otsu divides by empty histogram tails
        _, mask = median_otsu(np.asarray(dwi), vol_idx=b0_idx)
    return np.asarray(mask, dtype=bool)


def fit_tensor(dwi: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray,
               mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Fit the diffusion tensor (Basser et al. 1994) per voxel and return ``{"md", "fa", "ad", "rd", "mask"}``.

    dwi: (X, Y, Z, N) signal; bvals: (N,) s/mm²; bvecs: (N, 3) unit (0 for b0), e.g. from
    :func:`check_gradients`; mask: (X, Y, Z) bool, or None for :func:`brain_mask`.
    Returns float32 (X, Y, Z) maps: MD = mean eigenvalue, AD = largest, RD = mean of the two smaller, all in
    mm²/s; FA in [0, 1] (NaN of degenerate voxels set to 0); every map 0 outside the mask.
    """
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    dwi = np.asarray(dwi, dtype=np.float32)
    if dwi.ndim != 4:
        raise ValueError(f"dwi must be (X, Y, Z, N), got shape {dwi.shape}")
    mask = brain_mask(dwi, bvals) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != dwi.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} differs from the DWI's {dwi.shape[:3]}")
    gtab = gradient_table(np.asarray(bvals, dtype=np.float64), bvecs=np.asarray(bvecs, dtype=np.float64),
                          b0_threshold=B0_THRESHOLD)
    fit = TensorModel(gtab).fit(dwi, mask=mask)
    out = {"md": fit.md, "fa": fit.fa, "ad": fit.ad, "rd": fit.rd}
    for name, vol in out.items():
        vol = np.nan_to_num(np.asarray(vol, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if name == "fa":
            vol = np.clip(vol, 0.0, 1.0)
        out[name] = np.where(mask, vol, 0.0).astype(np.float32)
    out["mask"] = mask
    return out


# ----------------------------------------------------------------------------------------- files
@dataclasses.dataclass(frozen=True, eq=False)
class DwiInput:
    """One checked DWI: file paths, header shape (X, Y, Z, N), affine (4x4), cleaned gradients."""

    dwi: Path
    bval: Path
    bvec: Path
    shape: tuple[int, ...]
    affine: np.ndarray
    xform_code: int
    bvals: np.ndarray  # (N,) s/mm²
    bvecs: np.ndarray  # (N, 3)


def _load_image(path: Path):
    import nibabel as nib

    if not path.is_file():
        raise NeuroditError("file not found", path)
    try:
        return nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for a corrupt file: one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NeuroditError(f"not a readable NIfTI file ({type(exc).__name__}: {first})", path) from exc


def check_dwi(dwi: str | Path, bval: str | Path, bvec: str | Path) -> DwiInput:
    """Read a DWI's header (not its voxels) and its gradient files, and check them (:func:`check_gradients`);
    NeuroditError naming the file for a non-4D image or a gradient problem."""
    dwi, bval, bvec = Path(dwi), Path(bval), Path(bvec)
    img = _load_image(dwi)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) != 4:
        raise NeuroditError(f"{len(shape)}D image (shape {'x'.join(map(str, shape))}), expected a 4D DWI "
                            "(X x Y x Z x volumes)", dwi)
    bvals, bvecs = check_gradients(read_bvals(bval), read_bvecs(bvec), shape[3], bval_path=bval, bvec_path=bvec)
    # Keep the DWI's own space label (1 scanner, 2 aligned, 3 Talairach, 4 MNI); 1 when it has none.
    code = int(img.header["sform_code"]) or int(img.header["qform_code"]) or 1
    return DwiInput(dwi=dwi, bval=bval, bvec=bvec, shape=shape, affine=np.asarray(img.affine, dtype=np.float64),
                    xform_code=code, bvals=bvals, bvecs=bvecs)


def _read_mask(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    from neurodit.data.cohort import load_nifti_3d

    path = Path(path)
    if not path.is_file():
        raise NeuroditError("file not found", path)
    vol = load_nifti_3d(path, canonical=False)  # stored orientation, as the DWI's
    if vol.data.shape != tuple(shape):
        raise NeuroditError(f"mask shape {'x'.join(map(str, vol.data.shape))} differs from the DWI's "
                            f"{'x'.join(map(str, shape))}", path)
    mask = vol.data > 0
    if not mask.any():
        raise NeuroditError("mask is empty (no voxel > 0)", path)
    return mask


def _fit_one(inp: DwiInput, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    try:
        dwi = np.asarray(_load_image(inp.dwi).dataobj, dtype=np.float32)  # (X, Y, Z, N)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise NeuroditError(f"cannot read the image data ({type(exc).__name__}: {exc})", inp.dwi) from exc
    finite = np.isfinite(dwi)
    if not finite.all():
        raise NeuroditError(f"{int((~finite).sum())} NaN/Inf values", inp.dwi)
    maps = fit_tensor(dwi, inp.bvals, inp.bvecs, mask)
    if not maps["mask"].any():
        raise NeuroditError("brain mask is empty (median_otsu found no brain; pass --mask)", inp.dwi)
    return maps


def _write_map(vol: np.ndarray, inp: DwiInput, path: Path, name: str) -> Path:
    from neurodit.io import atomic_write_bytes, nifti_bytes

    return atomic_write_bytes(path, nifti_bytes(vol.astype(np.float32), inp.affine, xform_code=inp.xform_code,
                                                description=DESCRIPTIONS[name]))


def _summary(maps: dict[str, np.ndarray]) -> dict[str, float | int]:
    m = maps["mask"]
    return {"mask_voxels": int(m.sum()), **{f"median_{k}": float(np.median(maps[k][m])) for k in MAPS}}


def dti_file(dwi: str | Path, bval: str | Path, bvec: str | Path, out: str | Path, mask: str | Path | None = None,
             overwrite: bool = False) -> Path:
    """Fit one DWI and write ``OUT/md.nii.gz``, ``fa``, ``ad``, ``rd`` (float32, on the DWI's affine),
    ``mask.nii.gz`` (the mask used, 1/0) and ``run.json``; returns ``OUT``. Nothing is written on error."""
    from neurodit.io import atomic_dir, write_run_info

    inp = check_dwi(dwi, bval, bvec)
    mask_arr = None if mask is None else _read_mask(mask, inp.shape[:3])
    with atomic_dir(out, overwrite=overwrite) as tmp:  # entered first: a non-empty OUT fails before the fit
        maps = _fit_one(inp, mask_arr)
        for name in (*MAPS, "mask"):
            _write_map(maps[name].astype(np.float32), inp, tmp / f"{name}.nii.gz", name)
        write_run_info(tmp, {"dwi": inp.dwi, "bval": inp.bval, "bvec": inp.bvec, "mask": mask,
                             "b0_threshold": B0_THRESHOLD, "fit_method": "WLS",
                             "mask_method": "given" if mask is not None else "median_otsu"},
                       seed=None, units={"md": "mm2/s", "ad": "mm2/s", "rd": "mm2/s", "fa": "unitless"},
                       summary=_summary(maps))
    return Path(out)


def _index_dwis(dwi_dir: Path) -> dict[str, list[Path]]:
    """``{<name without _dwi.nii[.gz]>: [paths]}`` of every non-hidden ``*_dwi.nii[.gz]`` under ``dwi_dir``."""
    index: dict[str, list[Path]] = {}
    for p in sorted(dwi_dir.rglob("*_dwi.nii*")):
        rel = p.relative_to(dwi_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        for suffix in DWI_SUFFIXES:
            if p.name.endswith("_dwi" + suffix):
                index.setdefault(p.name[: -len("_dwi" + suffix)], []).append(p)
    return index


def dti_folder(dwi_dir: str | Path, out: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Fit every DWI of a BIDS-like folder and write one cohort folder per map: ``OUT/md/``, ``OUT/fa/``,
    ``OUT/ad/``, ``OUT/rd/``, each with ``participants.tsv`` (the input's columns, less a ``path`` column)
    and ``<participant_id>[_<session_id>]_<map>.nii.gz``, plus ``run.json`` in OUT and in each.

    ``dwi_dir`` holds ``participants.tsv`` and, per row, ``<participant_id>[_<session_id>]_dwi.nii[.gz]``
    (anywhere below it; session ``01`` may be spelled ``ses-01``) with ``..._dwi.bval`` and ``..._dwi.bvec``
    beside it. Every file is found and its header and gradients checked before the first fit, so a bad
    input fails in seconds; nothing is written on error. Each DWI gets its own ``median_otsu`` mask.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from neurodit.data.cohort import TABLE_NAME, _prefixes, read_participants, write_participants
    from neurodit.io import atomic_dir, write_run_info

    dwi_dir = Path(dwi_dir).expanduser()
    if not dwi_dir.is_dir():
        raise NeuroditError("DWI folder not found", dwi_dir)
    tsv = dwi_dir / TABLE_NAME
    table = read_participants(tsv)  # checks ids, duplicates, labels; NeuroditError naming the table
    raw = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.drop(columns=[c for c in ("path",) if c in raw.columns])  # it named the input, not our maps

    index = _index_dwis(dwi_dir)
    jobs: list[tuple[str, DwiInput]] = []  # (file prefix, checked input), in table order
    for i, pid, ses in zip(table.index, table["participant_id"], table["session_id"], strict=True):
        found = [(p, f) for p in _prefixes(pid, ses) for f in index.get(p, [])]
        label = pid + (f" session {ses}" if ses else "")
        if not found:
            raise NeuroditError(f"line {i + 2} ({label}): no {_prefixes(pid, ses)[0]}_dwi.nii[.gz] in {dwi_dir}", tsv)
        if len(found) > 1:
            raise NeuroditError(f"line {i + 2} ({label}): several DWIs match ({', '.join(f.name for _, f in found)})",
                                tsv)
        prefix, f = found[0]
        stem = f.name[: -len(".nii.gz")] if f.name.endswith(".nii.gz") else f.name[: -len(".nii")]
        jobs.append((prefix, check_dwi(f, f.with_name(stem + ".bval"), f.with_name(stem + ".bvec"))))

    summaries = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        from neurodit.data.maps import write_map

        for name in MAPS:
            (tmp / name).mkdir()
            write_participants(raw, tmp / name / TABLE_NAME)
            write_map(tmp / name, name)  # `prepare` reads each folder with its own map's unit checks
        for prefix, inp in tqdm(jobs, desc="dti", unit="dwi", disable=not progress):
            maps = _fit_one(inp, None)
            for name in MAPS:
                _write_map(maps[name], inp, tmp / name / f"{prefix}_{name}.nii.gz", name)
            summaries[prefix] = _summary(maps)
        config = {"dwi_dir": dwi_dir, "b0_threshold": B0_THRESHOLD, "fit_method": "WLS", "mask_method": "median_otsu"}
        for name in MAPS:
            write_run_info(tmp / name, config, seed=None, map=name, unit="unitless" if name == "fa" else "mm2/s")
        write_run_info(tmp, config, seed=None, inputs=[str(inp.dwi) for _, inp in jobs], summary=summaries)
    return Path(out)


def dti(dwi: str | Path, out: str | Path, bval: str | Path | None = None, bvec: str | Path | None = None,
        mask: str | Path | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """The ``neurodit dti`` entry: :func:`dti_folder` for a folder (no --bval/--bvec/--mask then), else
    :func:`dti_file` (--bval and --bvec required)."""
    dwi = Path(dwi)
    if dwi.is_dir():
        given = [flag for flag, v in (("--bval", bval), ("--bvec", bvec), ("--mask", mask)) if v is not None]
        if given:
            raise NeuroditError(f"{', '.join(given)} apply to one DWI file; a folder's DWIs carry their own "
                                "_dwi.bval/_dwi.bvec (and get a median_otsu mask)", dwi)
        return dti_folder(dwi, out, overwrite=overwrite, progress=progress)
    if bval is None or bvec is None:
        raise NeuroditError("a DWI file needs --bval and --bvec", dwi)
    return dti_file(dwi, bval, bvec, out, mask=mask, overwrite=overwrite)
