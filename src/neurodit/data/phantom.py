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

The ``study`` effects model (issue 11, the default of :func:`make_phantom_cohort`; ``classic`` is
the model above, byte for byte) adds, with sizes in :class:`StudyEffects` / :data:`SITES` and
docs/PHANTOM.md: white-matter hyperintensities (MD +20-50 %, irregular unions of ellipsoids in deep
and periventricular WM, Poisson counts rising with age² and AD severity) and lacunes (CSF-like spots),
following the STRIVE definitions (Wardlaw et al. 2013, Lancet Neurol 12:822); a second, finer
deformation scale strongest at the cortex, ventricle shape/asymmetry, patchy sulcal widening with
age, AD hippocampal atrophy; and per-cohort site effects (MD scale, noise, blur, smooth bias field).

Cohorts: ``camcan`` ages U(18, 88), sex F/M balanced, all diagnosis CN; ``adni`` ages U(55, 90),
sex balanced, diagnosis CN/AD balanced (or CN/MCI/AD in thirds with ``include_mci``), ages drawn
independently of sex and diagnosis (no confound). All blobs are ≥ 16 mm wide so every effect
survives resampling to a 32³ (~6 mm) grid. Sizes are chosen so that classes overlap (measured
effect sizes and a linear baseline on 32³ volumes: docs/PHANTOM.md): a logistic regression on
200 subjects' 32³ voxels reaches ≈ 0.71 for sex and ≈ 0.67 for AD vs CN (5-fold CV).

Outputs (the input format of docs/ARCHITECTURE.md), written atomically: ``participants.tsv``
(participant_id sub-0001..., sex, age, diagnosis), ``sub-XXXX.nii.gz`` (float32, mm²/s, MNI affine),
``phantom_latents.tsv`` (every subject's hidden variables: scale, α, β, severities, ...),
``phantom.json`` (cohort, seed, effect sizes; study model: ``effects_model``, ``study``, ``site``) and
``run.json``. Same seed -> same bytes (gzip with
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

__all__ = ["PhantomEffects", "StudyEffects", "SiteEffects", "SITES", "EFFECT_MODELS", "Templates",
           "load_templates", "draw_subjects", "synthesize_subject", "synthesize_with_lesions", "apply_site",
           "resolve_site", "make_phantom_cohort", "COHORTS", "TISSUE_MD", "HIPPOCAMPUS_MM",
           "VENTRICLE_CENTRE_MM", "SEX_PATTERN_MM"]

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
EFFECT_MODELS = ("study", "classic")


@dataclass(frozen=True)
class StudyEffects:
    """Effects of the ``study`` model on top of :class:`PhantomEffects` (issue 11; sizes in docs/PHANTOM.md).

    Lesion counts are Poisson with rate ``base + age·(age term)² + ad·s`` (s = mean AD severity,
    clipped at 0), so load accelerates with age as in population studies of white-matter
    hyperintensities (Wardlaw et al. 2013, STRIVE, Lancet Neurol 12:822).

    Why these defaults (measured on the demo data with the judge, docs/PHANTOM.md): lesions at random
    places and the cortical fine warp are what a PCA-Gaussian cannot reproduce (its samples carry faint
    ghosts of every training lesion), so the counts are high enough for the texture C2ST to reject it
    (AUC 0.78); the fine warp also hides AD from a small CNN, so the AD effects (hippocampal atrophy,
    diffuse WM MD, AD lesion rates) are strong enough to keep AD vs CN learnable (balanced acc. 0.64).
    """

    wmh_base: float = 4.0           # Poisson rate of WMH patches at 18 y, severity 0
    wmh_age: float = 30.0           # added rate at 88 y (× age term²)
    wmh_ad: float = 25.0            # added rate at AD severity 1
    wmh_md_lo: float = 0.20         # relative MD increase of a patch, U(lo, hi)
    wmh_md_hi: float = 0.50
    wmh_radius_mm: tuple[float, float] = (2.0, 8.0)   # log-uniform radius of a patch (diameter 4-16 mm)
    wmh_periventricular: float = 3.0  # extra weight of positions near the ventricles (× exp(-d / 8 mm))
    lacune_base: float = 3.0        # Poisson rate of lacunes (same form as the WMH rate)
    lacune_age: float = 12.0
    lacune_ad: float = 5.0
    lacune_radius_mm: tuple[float, float] = (2.0, 6.0)  # uniform radius (diameter 4-12 mm)
    warp_fine_sd_mm: float = 5.0    # second deformation scale: control points every 16 mm, at the cortex
    vent_shape_sd: float = 0.25     # per-axis relative sd of the ventricle envelope widths
    vent_asym_sd: float = 0.3       # left-right asymmetry of the ventricular expansion
    vent_shift_sd_mm: float = 4.0   # sd of the expansion centre's shift per axis
    sulcal_age: float = 0.6         # fraction of the 4 mm cortical CSF dilation applied at 88 y
    sulcal_sd: float = 0.1
    sulcal_field_sd: float = 1.5    # regional modulation (smooth field, clipped to [0, 1]: patchy)
    hippo_atrophy: float = 0.6      # AD: hippocampal tissue fraction replaced by CSF at severity 1
    ad_wm_md: float = 0.20          # AD: diffuse relative WM MD increase at severity 1


@dataclass(frozen=True)
class SiteEffects:
    """Scanner / protocol effects of one site, applied after the anatomy (docs/PHANTOM.md).

    ``md_scale``: global MD bias (b-value and tensor-fitting differences, a few percent);
    ``noise_sd``: multiplicative voxel noise; ``blur_fwhm_mm``: Gaussian point-spread function (an
    effective resolution coarser than the grid); ``bias_sd``: pointwise sd of a smooth log bias field
    (control points every 64 mm).
    """

    name: str = "none"
    md_scale: float = 1.0
    noise_sd: float = 0.03
    blur_fwhm_mm: float = 0.0
    bias_sd: float = 0.0


# camcan-like: 3T Prisma-era multi-shell DWI at 2 mm; adni-like: older 3T DTI protocols (b = 1000,
# 2.7 mm slices, fewer directions -> noisier, blurrier, slightly higher MD from the single-shell fit)
SITES = {
    "none": SiteEffects("none", 1.0, 0.03, 0.0, 0.0),
    "camcan": SiteEffects("camcan", 1.0, 0.03, 2.0, 0.02),
    "adni": SiteEffects("adni", 1.05, 0.05, 5.0, 0.04),
}
BIAS_SPACING_MM = 64.0
WARP_FINE_SPACING_MM = 16.0
SULCAL_DILATION_MM = 4.0
FINE_WARP_HALF_AXES_MM = (70.0, 90.0, 65.0)


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


# --------------------------------------------------------------------------- study-model maps (cached)
@dataclass(frozen=True)
class _StudyMaps:
    """Per-grid maps of the ``study`` model (read-only, cached by voxel size).

    ``wmh_cdf`` / ``lacune_cdf``: (D*H*W,) cumulative position probabilities of WMH patches (deep and
    periventricular WM) and lacunes (deep WM and central GM); ``sulcal_delta``: (D, H, W) GM fraction
    that a one-voxel CSF dilation of the cortex would turn into CSF; ``fine_basis`` / ``bias_basis``:
    per-axis bases of the 16 mm deformation; ``fine_weight``: (D, H, W) its amplitude profile, 0 in
    the deep brain rising to 1 at the cortex (registration residuals are largest at the cortex).
    """

    wmh_cdf: np.ndarray
    lacune_cdf: np.ndarray
    sulcal_delta: np.ndarray
    fine_basis: tuple[np.ndarray, np.ndarray, np.ndarray]
    fine_weight: np.ndarray


_STUDY_MAPS: dict[tuple[float, float], _StudyMaps] = {}


def _study_maps(t: Templates, periventricular: float) -> _StudyMaps:
    key = (t.voxel_size, float(periventricular))
    if key in _STUDY_MAPS:
        return _STUDY_MAPS[key]
    c = VENTRICLE_CENTRE_MM
    envelope = _outer3(*(_gauss_1d(t.axes_mm[k], c[k], VENTRICLE_SIGMA_MM[k]) for k in range(3)))
    ventricles = (t.csf > 0.5) & (envelope > 0.3)
    # distance (mm) of every voxel to the ventricles: periventricular WM is where WMH cluster
    d_vent = ndimage.distance_transform_edt(~ventricles) * t.voxel_size
    deep_wm = np.clip((t.wm - 0.5) / 0.5, 0.0, 1.0) ** 2
    p_wmh = deep_wm * (1.0 + periventricular * np.exp(-d_vent / 8.0))
    central = _outer3(*(_gauss_1d(t.axes_mm[k], (0.0, -5.0, 5.0)[k], (25.0, 30.0, 20.0)[k]) for k in range(3)))
    p_lac = np.clip(t.wm + t.gm - 0.5, 0.0, None) * central
    # sulcal widening: the cortical CSF grows by ~4 mm (>= 1 voxel; ventricles are left to the warp)
    r_vox = max(1, int(round(SULCAL_DILATION_MM / t.voxel_size)))
    dil = ndimage.grey_dilation(t.csf, size=(2 * r_vox + 1,) * 3)
    # ... at the convexity: the deep brain and the medial temporal lobe (whose atrophy is AD's, not
    # age's, here) are spared by the same radial profile as the fine deformation
    delta = np.minimum(np.clip(dil - t.csf, 0.0, None), t.gm) * (envelope < 0.3) * _fine_weight(t)
    out = _StudyMaps(
        wmh_cdf=np.cumsum(p_wmh.ravel()) / p_wmh.sum(), lacune_cdf=np.cumsum(p_lac.ravel()) / p_lac.sum(),
        sulcal_delta=delta.astype(np.float32),
        fine_basis=tuple(_basis(a, WARP_FINE_SPACING_MM) for a in t.axes_mm),
        fine_weight=_fine_weight(t),
    )
    for arr in (out.wmh_cdf, out.lacune_cdf, out.sulcal_delta, *out.fine_basis, out.fine_weight):
        arr.setflags(write=False)
    _STUDY_MAPS[key] = out
    return out


def _fine_weight(t: Templates) -> np.ndarray:
    """(D, H, W) amplitude of the fine deformation: smoothstep of the normalised radius about the
    ventricle centre (brain half-axes ~ (70, 90, 65) mm), 0 below 0.5 (deep GM, hippocampi), 1 above 0.85."""
    c = VENTRICLE_CENTRE_MM
    rho = np.sqrt(sum((((t.axes_mm[k] - c[k]) / FINE_WARP_HALF_AXES_MM[k]) ** 2)
                      .reshape([-1 if j == k else 1 for j in range(3)]) for k in range(3)))
    u = np.clip((rho - 0.5) / 0.35, 0.0, 1.0)
    return (u * u * (3.0 - 2.0 * u)).astype(np.float32)


def _soft_ellipsoid(axes: tuple[np.ndarray, ...], centre: np.ndarray, radii: np.ndarray, edge_mm: float,
                    voxel_mm: float) -> np.ndarray:
    """(d, h, w) occupancy in [0, 1] of an axis-aligned ellipsoid on the local grid ``axes`` (mm).

    A logistic edge ``edge_mm`` wide (about half a voxel) keeps sub-voxel lesions from vanishing
    between voxel centres; the occupancy is then scaled so that it sums to the ellipsoid's volume
    (a 2 mm lesion in a 4 mm voxel fills ~1/8 of it: partial volume, not a blown-up blob)."""
    r2 = sum(((axes[k] - centre[k]) / radii[k]).reshape([-1 if j == k else 1 for j in range(3)]) ** 2
             for k in range(3))
    dist_mm = (np.sqrt(r2) - 1.0) * float(np.mean(radii))
    occ = 1.0 / (1.0 + np.exp(np.clip(dist_mm / edge_mm, -30, 30)))
    volume_vox = 4.0 / 3.0 * np.pi * float(np.prod(radii)) / voxel_mm**3
    return occ * min(1.0, volume_vox / max(float(occ.sum()), 1e-12))


def _draw_lesions(t: Templates, row: dict | pd.Series, s: StudyEffects, rng: np.random.Generator):
    """WMH and lacune maps in template space, from the subject's counts in ``row``.

    Returns ``(wmh_amp, lacune, info)``: (D, H, W) relative MD increase (max over patches of
    amplitude × occupancy × WM fraction), (D, H, W) lacune occupancy (CSF fraction it imposes) and
    ``{"wmh_ml", "lacune_ml"}`` (partial-volume sums in template space).
    """
    maps = _study_maps(t, s.wmh_periventricular)
    v = t.voxel_size
    shape = t.shape
    edge = max(0.5, 0.4 * v)
    wmh = np.zeros(shape, np.float32)
    wmh_occ = np.zeros(shape, np.float32)
    lac = np.zeros(shape, np.float32)

    def place(cdf: np.ndarray) -> np.ndarray:
        idx = int(np.searchsorted(cdf, rng.random() * cdf[-1]))
        ijk = np.array(np.unravel_index(min(idx, cdf.size - 1), shape), float) + rng.uniform(-0.5, 0.5, 3)
        return ijk * v + t.affine[:3, 3]  # mm

    def box(centre: np.ndarray, reach: float):
        sl, ax = [], []
        for k in range(3):
            lo = max(int(np.floor((centre[k] - reach - t.affine[k, 3]) / v)), 0)
            hi = min(int(np.ceil((centre[k] + reach - t.affine[k, 3]) / v)) + 1, shape[k])
            sl.append(slice(lo, max(hi, lo)))
            ax.append(t.axes_mm[k][lo:max(hi, lo)])
        return tuple(sl), tuple(ax)

    lo, hi = np.log(s.wmh_radius_mm[0]), np.log(s.wmh_radius_mm[1])
    for _ in range(int(row["n_wmh"])):
        centre, r = place(maps.wmh_cdf), float(np.exp(rng.uniform(lo, hi)))
        amp = rng.uniform(s.wmh_md_lo, s.wmh_md_hi)
        # irregular patch: union of 1 + Poisson(1.5) ellipsoids scattered around the centre
        n_sub = 1 + int(rng.poisson(1.5))
        subs = [(centre + (rng.normal(0, 0.6 * r, 3) if j else 0.0), r * rng.uniform(0.5, 1.1, 3))
                for j in range(n_sub)]
        sl, ax = box(centre, 3.0 * r + 3 * edge)
        if any(x.size == 0 for x in ax):
            continue
        occ = np.zeros(tuple(x.size for x in ax), np.float32)
        for c_j, r_j in subs:
            occ = np.maximum(occ, _soft_ellipsoid(ax, c_j, r_j, edge, v))
        occ *= t.wm[sl]  # WMH are white-matter lesions: they follow the WM and stop at the cortex
        wmh_occ[sl] = np.maximum(wmh_occ[sl], occ)
        wmh[sl] = np.maximum(wmh[sl], amp * occ)
    for _ in range(int(row["n_lacunes"])):
        centre = place(maps.lacune_cdf)
        r = rng.uniform(*s.lacune_radius_mm) * rng.uniform(0.8, 1.2, 3)
        sl, ax = box(centre, float(r.max()) + 3 * edge)
        if any(x.size == 0 for x in ax):
            continue
        lac[sl] = np.maximum(lac[sl], _soft_ellipsoid(ax, centre, r, edge, v) * (t.wm[sl] + t.gm[sl]))
    vox_ml = v**3 / 1000.0
    return wmh, lac, {"wmh_ml": float(wmh_occ.sum() * vox_ml), "lacune_ml": float(lac.sum() * vox_ml)}


def resolve_site(site: str | SiteEffects | None, cohort: str) -> SiteEffects:
    """``None`` -> the cohort's default site (camcan-like / adni-like); a name -> :data:`SITES`."""
    if isinstance(site, SiteEffects):
        return site
    name = cohort if site is None else str(site)
    if name not in SITES:
        raise NeuroditError(f"phantom: unknown site '{name}' (choose {', '.join(SITES)})")
    return SITES[name]


def apply_site(vol: np.ndarray, site: SiteEffects, voxel_size: float, rng: np.random.Generator,
               noise: bool = True) -> np.ndarray:
    """Scanner / protocol effects on one (D, H, W) MD map in mm²/s (0 = background), in this order:
    blur (Gaussian PSF of FWHM ``blur_fwhm_mm``, normalised inside the brain so the outline stays
    where the brain mask puts it), MD × ``md_scale`` × smooth bias field exp(b(x)) with b a 64 mm
    Gaussian-basis field of pointwise sd ``bias_sd``, then × (1 + N(0, ``noise_sd``)) per voxel."""
    out = np.asarray(vol, np.float32).copy()
    support = (out > 0).astype(np.float32)
    if site.blur_fwhm_mm > 0:
        sigma = site.blur_fwhm_mm / 2.3548 / voxel_size
        num = ndimage.gaussian_filter(out, sigma, mode="constant")
        den = ndimage.gaussian_filter(support, sigma, mode="constant")
        out = np.where(support > 0, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    gain = np.float32(site.md_scale)
    if site.bias_sd > 0:
        bases = tuple(_basis(np.arange(n) * voxel_size, BIAS_SPACING_MM) for n in out.shape)
        coef = rng.normal(0.0, site.bias_sd, tuple(b.shape[1] for b in bases)).astype(np.float32)
        out *= gain * np.exp(_separable(bases, coef)).astype(np.float32)
    else:
        out *= gain
    if noise and site.noise_sd > 0:
        out *= 1.0 + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(site.noise_sd)
    return out


# --------------------------------------------------------------------------- subjects
def draw_subjects(cohort: str, n: int, seed: int = 0, include_mci: bool = False,
                  effects: PhantomEffects | None = None, study: StudyEffects | None = None) -> pd.DataFrame:
    """Labels and hidden variables of ``n`` subjects (one row each), deterministic in ``seed``.

    Columns: participant_id, sex, age, diagnosis (the participants table) and the latents
    scale (linear head scale), scale_x/y/z (per-axis), alpha (ventricular expansion), beta (GM->CSF
    atrophy), wm_md/gm_md/csf_md (mm²/s), sev_h/sev_v (AD severities), seed (per-subject stream).
    With ``study`` (the study model) also: n_wmh, n_lacunes (Poisson counts), vent_asym,
    vent_wx/wy/wz (ventricle envelope width factors), vent_dx/dy/dz (centre shift, mm), sulcal
    (sulcal widening), drawn from a separate stream so the classic columns are unchanged.
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
        if study is not None:
            rows[-1].update(_draw_study_latents(study, seed, i, a, sev_h, sev_v))
    return pd.DataFrame(rows)


def _draw_study_latents(s: StudyEffects, seed: int, i: int, a: float, sev_h: float, sev_v: float) -> dict:
    r = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
    sev = max(0.0, 0.5 * (sev_h + sev_v))
    wx, wy, wz = np.clip(1.0 + r.normal(0, s.vent_shape_sd, 3), 0.6, 1.5)
    dx, dy, dz = r.normal(0, s.vent_shift_sd_mm, 3)
    return {
        "n_wmh": int(r.poisson(s.wmh_base + s.wmh_age * a**2 + s.wmh_ad * sev)),
        "n_lacunes": int(r.poisson(s.lacune_base + s.lacune_age * a**2 + s.lacune_ad * sev)),
        "vent_asym": float(np.clip(r.normal(0, s.vent_asym_sd), -0.5, 0.5)),
        "vent_wx": float(wx), "vent_wy": float(wy), "vent_wz": float(wz),
        "vent_dx": float(dx), "vent_dy": float(dy), "vent_dz": float(dz),
        "sulcal": float(np.clip(s.sulcal_age * a + r.normal(0, s.sulcal_sd), 0.0, 1.0)),
    }


def synthesize_subject(t: Templates, row: dict | pd.Series, effects: PhantomEffects | None = None,
                       *, deform: bool = True, noise: bool = True, field: bool = True,
                       study: StudyEffects | None = None, site: SiteEffects | None = None) -> np.ndarray:
    """One MD map (D, H, W) float32 in mm²/s on the template grid, from one :func:`draw_subjects` row.

    ``deform``/``noise``/``field`` switch off the random deformation, voxel noise and random MD
    field (tests use them to check tissue values exactly); the labelled effects always apply.
    ``study`` (with a row drawn with the same ``study``) adds lesions, multi-scale deformation,
    ventricle shape and sulcal widening; ``site`` (study model only; default :data:`SITES` "none")
    replaces the voxel noise by the site's effects. Without ``study``: the classic model, bit for bit.
    """
    return synthesize_with_lesions(t, row, effects, deform=deform, noise=noise, field=field, study=study,
                                   site=site)[0]


def synthesize_with_lesions(t: Templates, row: dict | pd.Series, effects: PhantomEffects | None = None,
                            *, deform: bool = True, noise: bool = True, field: bool = True,
                            study: StudyEffects | None = None,
                            site: SiteEffects | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`synthesize_subject` plus the lesion volumes ``{"wmh_ml", "lacune_ml"}`` (template
    space, partial-volume sums; empty dict for the classic model)."""
    e = effects or PhantomEffects()
    rng = np.random.default_rng(int(row["seed"]))
    # the study model draws from its own stream: the classic draws (and so the classic anatomy of
    # the same subject) stay as they were
    rs = np.random.default_rng(np.random.SeedSequence(int(row["seed"]), spawn_key=(7,))) if study else None
    # lesions get a stream of their own: switching them off leaves the anatomy and the site untouched
    rl = np.random.default_rng(np.random.SeedSequence(int(row["seed"]), spawn_key=(8,))) if study else None
    sign = 1.0 if row["sex"] == "M" else -1.0
    shape = t.shape
    v = t.voxel_size

    # relative MD field f (D, H, W): random smooth blobs + sex pattern (± half the M-F difference)
    nb = tuple(b.shape[1] for b in t.field_basis)
    coef = rng.normal(0.0, e.field_sd, nb).astype(np.float32)
    f = _separable(t.field_basis, coef) if field else np.zeros(shape, np.float32)
    f += (0.5 * sign * e.sex_md) * t.sex_pattern

    gm, csf = t.gm, t.csf
    info: dict[str, float] = {}
    if study is not None:
        # sulcal widening: a fraction w(x) of the one-voxel cortical CSF dilation, w = sulcal latent
        # modulated by a smooth regional field (so sulci widen unevenly)
        maps = _study_maps(t, study.wmh_periventricular)
        w = float(row["sulcal"]) * (1.0 + _separable(t.field_basis, rs.normal(0.0, study.sulcal_field_sd, nb)
                                                     .astype(np.float32)))
        widen = np.clip(w, 0.0, 1.0).astype(np.float32) * maps.sulcal_delta
        gm, csf = gm - widen, csf + widen
    # tissue mixture in template space; atrophy turns a fraction beta of GM into CSF
    beta = float(row["beta"])
    wm_md = float(row["wm_md"])
    if study is not None:  # AD: diffusely raised WM MD (mean severity, clipped at 0)
        wm_md *= 1.0 + study.ad_wm_md * max(0.0, 0.5 * (float(row["sev_h"]) + float(row["sev_v"])))
    md = (gm * ((1.0 - beta) * float(row["gm_md"])) + t.wm * wm_md) * (1.0 + f)
    md += (csf + beta * gm) * float(row["csf_md"])
    md *= 1.0 + (e.hippo_md * float(row["sev_h"])) * t.hippocampus  # AD: medial-temporal MD increase
    if study is not None:
        # AD hippocampal atrophy: tissue replaced by CSF (enlarged temporal horn), a non-linear,
        # CSF-contrast change that the site's blur and noise do not wash out
        h = np.clip(study.hippo_atrophy * float(row["sev_h"]), 0.0, 0.6) * t.hippocampus
        md = md * (1.0 - h) + h * float(row["csf_md"])
        wmh, lac, info = _draw_lesions(t, row, study, rl)
        md *= 1.0 + wmh                                            # WMH: MD +20-50 % in the patch
        md = md * (1.0 - lac) + lac * float(row["csf_md"])         # lacunes: CSF-filled cavities
    md = md.astype(np.float32)

    # pull-back warp: for each output voxel the template-space position it samples (voxel units).
    # 1) undo head scaling about the ventricle centre (per axis: separable), in mm
    c = VENTRICLE_CENTRE_MM
    scales = (float(row["scale_x"]), float(row["scale_y"]), float(row["scale_z"]))
    y = [c[k] + (t.axes_mm[k] - c[k]) / scales[k] for k in range(3)]  # 3 x (n_k,)
    # 2) ventricular expansion: y' = y - alpha g(y) (y - c), g separable Gaussian envelope; no folding
    #    for alpha < 1 (radial derivative >= 1 - alpha)
    alpha = float(row["alpha"])
    if study is None:
        cv = c
        g = alpha * _outer3(*(_gauss_1d(y[k], c[k], VENTRICLE_SIGMA_MM[k]) for k in range(3)))  # (D,H,W)
    else:
        # ventricle shape: shifted centre, per-axis envelope widths, left-right asymmetric expansion
        # (factor 1 + asym·tanh(x / 10 mm) <= 1.5, so alpha·factor stays < 0.7: still no folding)
        cv = tuple(c[k] + float(row[f"vent_d{'xyz'[k]}"]) for k in range(3))
        env = [_gauss_1d(y[k], cv[k], VENTRICLE_SIGMA_MM[k] * float(row[f"vent_w{'xyz'[k]}"])) for k in range(3)]
        env[0] = env[0] * (1.0 + float(row["vent_asym"]) * np.tanh((y[0] - cv[0]) / 10.0))
        g = alpha * _outer3(*env)
    coords = np.empty((3,) + shape, np.float32)
    for k in range(3):
        bshape = [-1 if j == k else 1 for j in range(3)]
        yk = y[k].reshape(bshape).astype(np.float32)
        ck = (yk - (yk - cv[k]) * g - t.affine[k, 3]) / v
        if deform:  # 3) smooth random displacement (mm -> voxels)
            nw = tuple(b.shape[1] for b in t.warp_basis)
            ck = ck + _separable(t.warp_basis, rng.normal(0.0, e.warp_sd_mm / v, nw).astype(np.float32))
            if study is not None:  # second, finer scale (16 mm control points)
                sm = _study_maps(t, study.wmh_periventricular)
                fb = sm.fine_basis
                ck = ck + sm.fine_weight * _separable(fb, rs.normal(0.0, study.warp_fine_sd_mm / v, tuple(
                    b.shape[1] for b in fb)).astype(np.float32))
        coords[k] = ck
    out = ndimage.map_coordinates(md, coords, order=1, mode="constant", cval=0.0, prefilter=False,
                                  output=np.float32)
    if study is None:
        if noise:
            out *= 1.0 + rng.standard_normal(shape, dtype=np.float32) * np.float32(e.noise_sd)
    else:
        out[out < BACKGROUND_MM2S] = 0.0  # the site's blur is normalised inside the brain support
        out = apply_site(out, site or SITES["none"], v, rs, noise=noise)
    # Template resampling and the warp leave a halo of tiny positive values (down to 1e-19) around
    # the brain; below 1% of WM MD nothing is tissue, so the background is exactly 0, as the input
    # format promises.
    out[out < BACKGROUND_MM2S] = 0.0
    return out, info


def make_phantom_cohort(cohort: str, n: int, out: str | Path, seed: int = 0, voxel_size: float = 2.0,
                        include_mci: bool = False, overwrite: bool = False,
                        effects: PhantomEffects | None = None, effects_model: str = "study",
                        site: str | SiteEffects | None = None, study: StudyEffects | None = None) -> Path:
    """Write a ``camcan`` or ``adni`` phantom cohort folder (input format), atomically.

    Args:
        cohort: ``"camcan"`` (sex F/M, ages 18-88) or ``"adni"`` (CN/AD[/MCI], ages 55-90).
        n: number of subjects (ids ``sub-0001``...).
        out: output folder; must be absent or empty unless ``overwrite``.
        seed: same seed -> same bytes (except ``run.json``).
        voxel_size: mm; 1 and 2 are the template resolutions, other sizes are resampled.
        include_mci: adni only: CN/MCI/AD in thirds instead of CN/AD halves.
        effects: effect sizes of the shared (classic) model; defaults if None.
        effects_model: ``"study"`` (lesions, non-linear anatomy, site effects; the default) or
            ``"classic"`` (the model before issue 11, byte for byte).
        site: study model only: a :data:`SITES` name or :class:`SiteEffects`; None = the cohort's
            own site (camcan-like for camcan, adni-like for adni).
        study: study-model effect sizes; defaults if None.

    Returns the output folder. Volumes: float32 (D, H, W) MD in mm²/s, 0 outside the brain,
    MNI affine (2 mm: 99x117x95 voxels, origin (-98, -134, -72) mm).
    """
    if effects_model not in EFFECT_MODELS:
        raise NeuroditError(f"phantom: unknown effects model '{effects_model}' (choose {', '.join(EFFECT_MODELS)})")
    e = effects or PhantomEffects()
    classic = effects_model == "classic"
    if classic and (site is not None or study is not None):
        raise NeuroditError("phantom: --site applies to the study effects model only, not 'classic'")
    s = None if classic else (study or StudyEffects())
    table = draw_subjects(cohort, n, seed=seed, include_mci=include_mci, effects=e, study=s)  # checks cohort
    site_fx = None if classic else resolve_site(site, cohort)
    t = load_templates(float(voxel_size))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        lesions = []
        for _, row in table.iterrows():
            vol, info = synthesize_with_lesions(t, row, e, study=s, site=site_fx)
            lesions.append(info)
            atomic_write_bytes(tmp / f"{row['participant_id']}.nii.gz", nifti_bytes(vol, t.affine, xform_code=4))
        if not classic:
            table = pd.concat([table, pd.DataFrame(lesions, index=table.index)], axis=1)
        cols = ["participant_id", "sex", "age", "diagnosis"]
        _write_tsv(tmp / "participants.tsv", table[cols])
        _write_tsv(tmp / "phantom_latents.tsv", table)
        cfg = {"cohort": cohort, "n": n, "seed": seed, "voxel_size": float(voxel_size),
               "include_mci": include_mci, "effects": dataclasses.asdict(e),
               "shape": list(t.shape), "affine": t.affine.tolist(), "unit": "mm2/s"}
        if not classic:  # classic keeps its earlier phantom.json, byte for byte
            cfg.update({"effects_model": effects_model, "study": dataclasses.asdict(s),
                        "site": dataclasses.asdict(site_fx)})
        write_json(tmp / "phantom.json", cfg)
        write_run_info(tmp, cfg, seed, stage="phantom")
    return Path(out)


def _write_tsv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
