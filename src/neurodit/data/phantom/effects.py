"""Effect sizes and anatomical constants of the phantom model (the table in :mod:`neurodit.data.phantom`)."""

from __future__ import annotations

from dataclasses import dataclass

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
# study model: control points of the fine deformation, the cortical CSF dilation that sulcal widening
# scales, and the brain half-axes (mm) of the fine deformation's radial profile
WARP_FINE_SPACING_MM = 16.0
SULCAL_DILATION_MM = 4.0
FINE_WARP_HALF_AXES_MM = (70.0, 90.0, 65.0)
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
