"""Phantom cohorts: synthetic MD maps with known, documented effects, built on the MNI152 templates.

The embedded default data of neurodit (issue 2, section 3). Each subject is a mean-diffusivity
(MD, mm²/s) map in MNI space built from nilearn's offline MNI152 2009 tissue templates
(``load_mni152_gm_template``, ``load_mni152_wm_template``, ``load_mni152_brain_mask``):

    MD(x) = [p_GM(x) MD_GM + p_WM(x) MD_WM] (1 + f(x)) + p_CSF(x) MD_CSF,   0 outside the brain

with partial-volume fractions p (CSF = mask - GM - WM), tissue values MD_WM ≈ 0.70e-3,
MD_GM ≈ 0.85e-3, MD_CSF ≈ 3.0e-3 mm²/s (free water at 37 °C), and f a smooth relative MD field
(random per subject + the sex pattern). The map is then warped (head-size scaling, ventricular
expansion, smooth random deformation) and given multiplicative Gaussian noise.

Effects and their sizes (defaults of :class:`PhantomEffects`; "age term" = (age - 18) / 70, i.e.
0 at 18 and 1 at 88 years; both cohorts use the same model so effects carry across cohorts):

======================  ===================================================  ============================
effect                  model                                                size (default)
======================  ===================================================  ============================
head size (sex)         linear scale about the ventricle centre              M - F = +4 % (M +2 %, F -2 %)
head size (individual)  N(0, sd) linear scale, + N(0, 1.5 %) per axis          sd 3.5 % (d ≈ 1.1)
sex regional MD         4 Gaussian blobs (σ 16 mm) on tissue MD: frontal      M - F = ±5 % MD at the blob
                        (±30, 25, 25) mm higher in M, parieto-occipital       centres (d ≈ 1.9 for the
                        (±30, -55, 20) mm lower in M                          frontal/posterior WM ratio)
random regional MD      Gaussian blobs every 32 mm (σ 16 mm), N(0, sd)        pointwise sd 3 % MD
WM MD (age)             MD_WM × (1 + k·age term + N(0, 3 %))                  k = +15 % at 88 y
GM / CSF MD             × (1 + N(0, 2 %)) / × (1 + N(0, 1 %))                 individual only
atrophy (age)           fraction β of GM turned into CSF (sulcal widening)    β = 10 % at 88 y (sd 1 %)
ventricles (age)        radial expansion α about (0, -15, 13) mm, Gaussian    α = 0.05 + 0.25·age term
                        envelope σ (18, 28, 14) mm; local volume ×(1-α)^-3    (sd 0.04): ×1.2 at 18 y,
                                                                              ×2.8 at 88 y
AD hippocampal MD       MD × (1 + h·s_h·E(x)), E = soft ellipsoids at         h = +45 % at s_h = 1
                        (±27, -22, -12) mm, radii (7, 17, 8) mm               (≈ +32 % ROI mean, d ≈ 2.4)
AD ventricles           α += v·s_v                                            v = 0.25
AD severity             s = base + N(0, sd); base CN 0, MCI 0.5, AD 1         sd: s_h 0.45, s_v 0.6
deformation             smooth displacement, control points every 40 mm       pointwise sd 2 mm per axis
noise                   MD × (1 + N(0, sd)) per voxel                         sd 3 %
======================  ===================================================  ============================

Cohorts: ``camcan`` ages U(18, 88), sex F/M balanced, all diagnosis CN; ``adni`` ages U(55, 90),
sex balanced, diagnosis CN/AD balanced (or CN/MCI/AD in thirds with ``include_mci``), ages drawn
independently of sex and diagnosis (no confound). All blobs are ≥ 16 mm wide so every effect
survives resampling to a 32³ (~6 mm) grid. Sizes are chosen so that classes overlap (measured
effect sizes and a linear baseline on 32³ volumes: docs/PHANTOM.md): a logistic regression on
200 subjects' 32³ voxels reaches ≈ 0.71 for sex and ≈ 0.67 for AD vs CN (5-fold CV).

Outputs (the input format of docs/ARCHITECTURE.md), written atomically: ``participants.tsv``
(participant_id sub-0001..., sex, age, diagnosis), ``sub-XXXX.nii.gz`` (float32, mm²/s, MNI affine),
``phantom_latents.tsv`` (every subject's hidden variables: scale, α, β, severities, ...),
``phantom.json`` (cohort, seed, effect sizes) and ``run.json``. Same seed -> same bytes (gzip with
mtime 0) for everything but ``run.json`` (which records time and versions).
"""

from __future__ import annotations

import dataclasses
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_bytes, nifti_bytes, write_json, write_run_info

__all__ = ["PhantomEffects", "Templates", "load_templates", "draw_subjects", "synthesize_subject",
           "make_phantom_cohort", "COHORTS", "TISSUE_MD", "HIPPOCAMPUS_MM", "VENTRICLE_CENTRE_MM",
           "SEX_PATTERN_MM"]

COHORTS = ("camcan", "adni")
AGE_RANGE = {"camcan": (18.0, 88.0), "adni": (55.0, 90.0)}
# MD of pure tissue in mm²/s (adult brain, b ≈ 1000 s/mm²; CSF ≈ free water at 37 °C)
TISSUE_MD = {"wm": 0.70e-3, "gm": 0.85e-3, "csf": 3.0e-3}
# MNI coordinates (mm): centre and radii of the hippocampal ellipsoids (left, right)
HIPPOCAMPUS_MM = (((-27.0, -22.0, -12.0), (7.0, 17.0, 8.0)), ((27.0, -22.0, -12.0), (7.0, 17.0, 8.0)))
# centroid of the lateral ventricles in the MNI152 2 mm CSF map (CSF > 0.8 near the midline)
VENTRICLE_CENTRE_MM = (0.0, -15.0, 13.0)
VENTRICLE_SIGMA_MM = (18.0, 28.0, 14.0)
# sex pattern blobs: (centre mm, sign of M - F)
SEX_PATTERN_MM = (((-30.0, 25.0, 25.0), 1.0), ((30.0, 25.0, 25.0), 1.0),
                  ((-30.0, -55.0, 20.0), -1.0), ((30.0, -55.0, 20.0), -1.0))
SEX_PATTERN_SIGMA_MM = 16.0
# control-point spacing of the random MD field and of the random deformation (bases cached per grid)
FIELD_SPACING_MM = 32.0
WARP_SPACING_MM = 40.0


BACKGROUND_MM2S = 7e-6  # 1% of WM MD: below this a phantom voxel is background (0)


@dataclass(frozen=True)
class PhantomEffects:
    """Effect sizes of the phantom model (relative values are fractions, e.g. 0.03 = 3 %)."""

    head_sex: float = 0.02          # linear head scale: M +2 %, F -2 %
    head_sd: float = 0.035          # individual linear scale sd
    head_aniso_sd: float = 0.015    # extra per-axis scale sd
    sex_md: float = 0.05            # M - F relative MD difference at the sex blob centres
    field_sd: float = 0.03          # random regional relative MD field, pointwise sd
    wm_age: float = 0.15            # relative WM MD increase from 18 to 88 y
    wm_sd: float = 0.03
    gm_sd: float = 0.02
    csf_sd: float = 0.01
    atrophy_age: float = 0.10       # GM fraction turned into CSF at 88 y
    atrophy_sd: float = 0.01
    vent_base: float = 0.05         # ventricular expansion α at 18 y
    vent_age: float = 0.25          # α increase from 18 to 88 y
    vent_sd: float = 0.04
    hippo_md: float = 0.45          # relative hippocampal MD increase at severity 1 (AD)
    ad_vent: float = 0.25           # α increase at severity 1
    sev_h_sd: float = 0.45
    sev_v_sd: float = 0.6
    warp_sd_mm: float = 2.0
    noise_sd: float = 0.03          # multiplicative voxel noise


SEVERITY_BASE = {"CN": 0.0, "MCI": 0.5, "AD": 1.0}


# --------------------------------------------------------------------------- templates (cached)
@dataclass(frozen=True)
class Templates:
    """MNI152 tissue fractions on the phantom grid, plus cached spatial bases (all float32).

    ``gm, wm, csf, mask``: (D, H, W) fractions in [0, 1]; ``affine``: 4x4 voxel -> MNI mm;
    ``axes_mm``: 1D world coordinate of each voxel index per axis; ``sex_pattern`` and
    ``hippocampus``: (D, H, W) maps in [-1, 1] / [0, 1]; ``field_basis`` / ``warp_basis``: per-axis
    (n_axis, n_ctrl) Gaussian bases with rows normalised to unit L2 norm (pointwise sd = coefficient sd).
    """

    voxel_size: float
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray]
    sex_pattern: np.ndarray
    hippocampus: np.ndarray
    field_basis: tuple[np.ndarray, np.ndarray, np.ndarray]
    warp_basis: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mask.shape)  # type: ignore[return-value]


def _gauss_1d(x: np.ndarray, c: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - c) / sigma) ** 2)


def _basis(x_mm: np.ndarray, spacing: float) -> np.ndarray:
    """(n, m) Gaussian bumps (σ = spacing/2) on control points covering ``x_mm``; unit-norm rows."""
    ctrl = np.arange(x_mm.min() - spacing / 2, x_mm.max() + spacing, spacing)
    b = np.exp(-0.5 * ((x_mm[:, None] - ctrl[None, :]) / (spacing / 2)) ** 2)
    return (b / np.linalg.norm(b, axis=1, keepdims=True)).astype(np.float32)


def _separable(bases: tuple[np.ndarray, np.ndarray, np.ndarray], coef: np.ndarray) -> np.ndarray:
    """Tensor-product expansion: (D,a) x (H,b) x (W,c) bases, (a,b,c) coefficients -> (D,H,W)."""
    bx, by, bz = bases
    t = coef @ bz.T                                   # (a, b, W)
    t = np.einsum("jb,abk->ajk", by, t)               # (a, H, W)
    return np.tensordot(bx, t, axes=1)                # (D, H, W)


def _outer3(fx: np.ndarray, fy: np.ndarray, fz: np.ndarray) -> np.ndarray:
    return fx[:, None, None] * fy[None, :, None] * fz[None, None, :]


@functools.lru_cache(maxsize=4)
def load_templates(voxel_size: float = 2.0) -> Templates:
    """Load the MNI152 GM/WM/mask templates once and resample them to ``voxel_size`` mm (cached).

    1 and 2 mm use nilearn's native resolutions; other sizes are Gaussian pre-filtered (FWHM
    matching the voxel growth, against aliasing) and linearly resampled from the nearest finer one.
    The grid keeps the template's corner origin (-98, -134, -72) mm and its RAS orientation.
    """
    from nilearn import datasets

    if not 0.5 <= voxel_size <= 12.0:
        raise NeuroditError(f"phantom: voxel size must be in [0.5, 12] mm, got {voxel_size}")
    res = 1 if voxel_size < 2.0 else 2
    imgs = (datasets.load_mni152_gm_template(resolution=res), datasets.load_mni152_wm_template(resolution=res),
            datasets.load_mni152_brain_mask(resolution=res))
    affine0 = np.asarray(imgs[2].affine, dtype=np.float64)
    vols = [np.asarray(im.get_fdata(), dtype=np.float32) for im in imgs]
    shape0 = np.array(vols[0].shape)
    if abs(voxel_size - res) > 1e-6:
        zoom = voxel_size / res
        shape = tuple(int(s) for s in np.floor((shape0 - 1) / zoom).astype(int) + 1)
        sigma = np.sqrt(max(zoom**2 - 1.0, 0.0)) / 2.355  # in template voxels
        out = []
        for v in vols:
            if zoom > 1:
                v = ndimage.gaussian_filter(v, sigma, mode="constant")
            out.append(ndimage.affine_transform(v, np.full(3, zoom), output_shape=shape, order=1,
                                                mode="constant", cval=0.0, output=np.float32))
        vols = out
        affine = affine0.copy()
        affine[:3, :3] = affine0[:3, :3] * zoom
    else:
        affine = affine0
    gm, wm, mask = (np.clip(v, 0.0, 1.0) for v in vols)
    gm, wm = gm * mask, wm * mask  # a few GM voxels lie outside the brain mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    shape = mask.shape
    axes = tuple((np.arange(n) * affine[k, k] + affine[k, 3]).astype(np.float64) for k, n in enumerate(shape))

    sex = np.zeros(shape, np.float32)
    for centre, sign in SEX_PATTERN_MM:
        sex += sign * _outer3(*(_gauss_1d(axes[k], centre[k], SEX_PATTERN_SIGMA_MM) for k in range(3)))
    # soft-edged ellipsoids: 1 inside, 0 outside, logistic edge ~1.5 mm wide at the surface
    hip = np.zeros(shape, np.float32)
    for centre, radii in HIPPOCAMPUS_MM:
        r2 = sum(((axes[k] - centre[k]) / radii[k]).reshape([-1 if j == k else 1 for j in range(3)]) ** 2
                 for k in range(3))
        hip = np.maximum(hip, 1.0 / (1.0 + np.exp((np.sqrt(r2) - 1.0) / 0.1)))
    out_t = Templates(
        voxel_size=float(voxel_size), gm=gm, wm=wm, csf=csf, mask=mask, affine=affine, axes_mm=axes,
        sex_pattern=sex.astype(np.float32), hippocampus=hip.astype(np.float32),
        field_basis=tuple(_basis(a, FIELD_SPACING_MM) for a in axes),
        warp_basis=tuple(_basis(a, WARP_SPACING_MM) for a in axes),
    )
    # the instance is shared through the cache: make every array read-only
    for arr in (out_t.gm, out_t.wm, out_t.csf, out_t.mask, out_t.affine, out_t.sex_pattern, out_t.hippocampus,
                *out_t.axes_mm, *out_t.field_basis, *out_t.warp_basis):
        arr.setflags(write=False)
    return out_t


# --------------------------------------------------------------------------- subjects
def draw_subjects(cohort: str, n: int, seed: int = 0, include_mci: bool = False,
                  effects: PhantomEffects | None = None) -> pd.DataFrame:
    """Labels and hidden variables of ``n`` subjects (one row each), deterministic in ``seed``.

    Columns: participant_id, sex, age, diagnosis (the participants table) and the latents
    scale (linear head scale), scale_x/y/z (per-axis), alpha (ventricular expansion), beta (GM->CSF
    atrophy), wm_md/gm_md/csf_md (mm²/s), sev_h/sev_v (AD severities), seed (per-subject stream).
    """
    e = effects or PhantomEffects()
    if cohort not in COHORTS:
        raise NeuroditError(f"phantom: unknown cohort '{cohort}' (choose {', '.join(COHORTS)})")
    if n < 1:
        raise NeuroditError(f"phantom: --n must be >= 1, got {n}")
    if include_mci and cohort != "adni":
        raise NeuroditError("phantom: --include-mci only applies to the adni cohort")
    # independent streams via spawn keys (a plain list entropy drops trailing zeros: [s, 1, 0] == [s, 1])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    sex = rng.permutation(np.array(["F", "M"] * (n // 2 + 1))[:n])
    if cohort == "adni":
        classes = ["CN", "MCI", "AD"] if include_mci else ["CN", "AD"]
        diag = rng.permutation(np.array(classes * (n // len(classes) + 1))[:n])
    else:
        diag = np.array(["CN"] * n)
    lo, hi = AGE_RANGE[cohort]
    rows = []
    for i in range(n):
        r = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, i)))  # one stream per subject
        age = float(np.round(r.uniform(lo, hi), 1))
        a = (age - 18.0) / 70.0
        sign = 1.0 if sex[i] == "M" else -1.0
        base = SEVERITY_BASE[str(diag[i])]
        sev_h = base + r.normal(0, e.sev_h_sd) if cohort == "adni" else 0.0
        sev_v = base + r.normal(0, e.sev_v_sd) if cohort == "adni" else 0.0
        scale = 1.0 + sign * e.head_sex + r.normal(0, e.head_sd)
        sx, sy, sz = scale * (1.0 + r.normal(0, e.head_aniso_sd, 3))
        rows.append({
            "participant_id": f"sub-{i + 1:04d}", "sex": str(sex[i]), "age": age, "diagnosis": str(diag[i]),
            "scale": scale, "scale_x": sx, "scale_y": sy, "scale_z": sz,
            "alpha": float(np.clip(e.vent_base + e.vent_age * a + e.ad_vent * sev_v + r.normal(0, e.vent_sd),
                                   0.0, 0.45)),
            "beta": float(np.clip(e.atrophy_age * a + r.normal(0, e.atrophy_sd), 0.0, 0.5)),
            "wm_md": TISSUE_MD["wm"] * (1.0 + e.wm_age * a + r.normal(0, e.wm_sd)),
            "gm_md": TISSUE_MD["gm"] * (1.0 + r.normal(0, e.gm_sd)),
            "csf_md": TISSUE_MD["csf"] * (1.0 + r.normal(0, e.csf_sd)),
            "sev_h": sev_h, "sev_v": sev_v,
            "seed": int(r.integers(0, 2**31 - 1)),
        })
    return pd.DataFrame(rows)


def synthesize_subject(t: Templates, row: dict | pd.Series, effects: PhantomEffects | None = None,
                       *, deform: bool = True, noise: bool = True, field: bool = True) -> np.ndarray:
    """One MD map (D, H, W) float32 in mm²/s on the template grid, from one :func:`draw_subjects` row.

    ``deform``/``noise``/``field`` switch off the random deformation, voxel noise and random MD
    field (tests use them to check tissue values exactly); the labelled effects always apply.
    """
    e = effects or PhantomEffects()
    rng = np.random.default_rng(int(row["seed"]))
    sign = 1.0 if row["sex"] == "M" else -1.0
    shape = t.shape
    v = t.voxel_size

    # relative MD field f (D, H, W): random smooth blobs + sex pattern (± half the M-F difference)
    nb = tuple(b.shape[1] for b in t.field_basis)
    coef = rng.normal(0.0, e.field_sd, nb).astype(np.float32)
    f = _separable(t.field_basis, coef) if field else np.zeros(shape, np.float32)
    f += (0.5 * sign * e.sex_md) * t.sex_pattern

    # tissue mixture in template space; atrophy turns a fraction beta of GM into CSF
    beta = float(row["beta"])
    md = (t.gm * ((1.0 - beta) * float(row["gm_md"])) + t.wm * float(row["wm_md"])) * (1.0 + f)
    md += (t.csf + beta * t.gm) * float(row["csf_md"])
    md *= 1.0 + (e.hippo_md * float(row["sev_h"])) * t.hippocampus  # AD: medial-temporal MD increase
    md = md.astype(np.float32)

    # pull-back warp: for each output voxel the template-space position it samples (voxel units).
    # 1) undo head scaling about the ventricle centre (per axis: separable), in mm
    c = VENTRICLE_CENTRE_MM
    scales = (float(row["scale_x"]), float(row["scale_y"]), float(row["scale_z"]))
    y = [c[k] + (t.axes_mm[k] - c[k]) / scales[k] for k in range(3)]  # 3 x (n_k,)
    # 2) ventricular expansion: y' = y - alpha g(y) (y - c), g separable Gaussian envelope; no folding
    #    for alpha < 1 (radial derivative >= 1 - alpha)
    alpha = float(row["alpha"])
    g = alpha * _outer3(*(_gauss_1d(y[k], c[k], VENTRICLE_SIGMA_MM[k]) for k in range(3)))  # (D,H,W)
    coords = np.empty((3,) + shape, np.float32)
    for k in range(3):
        bshape = [-1 if j == k else 1 for j in range(3)]
        yk = y[k].reshape(bshape).astype(np.float32)
        ck = (yk - (yk - c[k]) * g - t.affine[k, 3]) / v
        if deform:  # 3) smooth random displacement (mm -> voxels)
            nw = tuple(b.shape[1] for b in t.warp_basis)
            ck = ck + _separable(t.warp_basis, rng.normal(0.0, e.warp_sd_mm / v, nw).astype(np.float32))
        coords[k] = ck
    out = ndimage.map_coordinates(md, coords, order=1, mode="constant", cval=0.0, prefilter=False,
                                  output=np.float32)
    if noise:
        out *= 1.0 + rng.standard_normal(shape, dtype=np.float32) * np.float32(e.noise_sd)
    # Template resampling and the warp leave a halo of tiny positive values (down to 1e-19) around
    # the brain; below 1% of WM MD nothing is tissue, so the background is exactly 0, as the input
    # format promises.
    out[out < BACKGROUND_MM2S] = 0.0
    return out


def make_phantom_cohort(cohort: str, n: int, out: str | Path, seed: int = 0, voxel_size: float = 2.0,
                        include_mci: bool = False, overwrite: bool = False,
                        effects: PhantomEffects | None = None) -> Path:
    """Write a ``camcan`` or ``adni`` phantom cohort folder (input format), atomically.

    Args:
        cohort: ``"camcan"`` (sex F/M, ages 18-88) or ``"adni"`` (CN/AD[/MCI], ages 55-90).
        n: number of subjects (ids ``sub-0001``...).
        out: output folder; must be absent or empty unless ``overwrite``.
        seed: same seed -> same bytes (except ``run.json``).
        voxel_size: mm; 1 and 2 are the template resolutions, other sizes are resampled.
        include_mci: adni only: CN/MCI/AD in thirds instead of CN/AD halves.
        effects: effect sizes (see the module docstring); defaults if None.

    Returns the output folder. Volumes: float32 (D, H, W) MD in mm²/s, 0 outside the brain,
    MNI affine (2 mm: 99x117x95 voxels, origin (-98, -134, -72) mm).
    """
    e = effects or PhantomEffects()
    table = draw_subjects(cohort, n, seed=seed, include_mci=include_mci, effects=e)
    t = load_templates(float(voxel_size))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for _, row in table.iterrows():
            vol = synthesize_subject(t, row, e)
            atomic_write_bytes(tmp / f"{row['participant_id']}.nii.gz", nifti_bytes(vol, t.affine, xform_code=4))
        cols = ["participant_id", "sex", "age", "diagnosis"]
        _write_tsv(tmp / "participants.tsv", table[cols])
        _write_tsv(tmp / "phantom_latents.tsv", table)
        cfg = {"cohort": cohort, "n": n, "seed": seed, "voxel_size": float(voxel_size),
               "include_mci": include_mci, "effects": dataclasses.asdict(e),
               "shape": list(t.shape), "affine": t.affine.tolist(), "unit": "mm2/s"}
        write_json(tmp / "phantom.json", cfg)
        write_run_info(tmp, cfg, seed, stage="phantom")
    return Path(out)


def _write_tsv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
