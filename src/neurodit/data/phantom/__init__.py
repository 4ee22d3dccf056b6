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

FA (issue 22, ``maps=("md", "fa")``; :mod:`neurodit.data.phantom.fa`): from the same latent subject as
the MD map (same tissue fractions, atrophy, lesions, warp, site blur, and the MD itself): WM 0.60 with a
fixed tract-like pattern (0.50-0.70), GM 0.17, CSF 0.07, WM -0.0025 per year after 30; written as
``out/md/`` and ``out/fa/`` cohort folders (docs/PHANTOM.md "FA").

Cohorts: ``camcan`` ages U(18, 88), sex F/M balanced, all diagnosis CN; ``adni`` ages U(55, 90),
sex balanced, diagnosis CN/AD balanced (or CN/MCI/AD in thirds with ``include_mci``), ages drawn
independently of sex and diagnosis (no confound). All blobs are ≥ 16 mm wide so every effect
survives resampling to a 32³ (~6 mm) grid. Sizes are chosen so that classes overlap (measured
effect sizes and a linear baseline on 32³ volumes: docs/PHANTOM.md): a logistic regression on
200 subjects' 32³ voxels reaches ≈ 0.71 for sex and ≈ 0.67 for AD vs CN (5-fold CV).

Modules: ``effects`` (the sizes above, constants), ``templates`` (MNI152 tissue maps on the grid,
spatial bases), ``subjects`` (labels and hidden variables), ``lesions`` (the study model's lesions and
per-grid maps), ``site`` (scanner effects), ``synthesize`` (one subject's map; the classic / study
difference in one place), ``make`` (the cohort folder).

Outputs (the input format of docs/ARCHITECTURE.md), written atomically: ``participants.tsv``
(participant_id sub-0001..., sex, age, diagnosis), ``sub-XXXX.nii.gz`` (float32, mm²/s, MNI affine),
``phantom_latents.tsv`` (every subject's hidden variables: scale, α, β, severities, ...),
``phantom.json`` (cohort, seed, effect sizes; study model: ``effects_model``, ``study``, ``site``) and
``run.json``. Same seed -> same bytes (gzip with
mtime 0) for everything but ``run.json`` (which records time and versions).
"""

from neurodit.data.phantom.effects import (
    COHORTS,
    EFFECT_MODELS,
    HIPPOCAMPUS_MM,
    SEX_PATTERN_MM,
    TISSUE_MD,
    VENTRICLE_CENTRE_MM,
    PhantomEffects,
    StudyEffects,
)
from neurodit.data.phantom.fa import TISSUE_FA, FAEffects
from neurodit.data.phantom.make import make_phantom_cohort
from neurodit.data.phantom.site import SITES, SiteEffects, apply_site, resolve_site
from neurodit.data.phantom.subjects import draw_subjects
from neurodit.data.phantom.synthesize import synthesize_maps, synthesize_subject, synthesize_with_lesions
from neurodit.data.phantom.templates import Templates, load_templates

__all__ = ["PhantomEffects", "StudyEffects", "FAEffects", "TISSUE_FA", "SiteEffects", "SITES", "EFFECT_MODELS",
           "Templates", "load_templates", "synthesize_maps", "draw_subjects", "synthesize_subject", "synthesize_with_lesions", "apply_site",
           "resolve_site", "make_phantom_cohort", "COHORTS", "TISSUE_MD", "HIPPOCAMPUS_MM",
           "VENTRICLE_CENTRE_MM", "SEX_PATTERN_MM"]
