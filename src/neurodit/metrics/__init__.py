"""Evaluation of synthetic MD volumes: MS-SSIM, MMD, memorization audit, through-plane coherence.

Entry point: :func:`neurodit.metrics.evaluate.evaluate` (``neurodit evaluate``); the metric
functions work on arrays and are importable on their own. The metrics.json schema is documented in
:mod:`neurodit.metrics.evaluate`.
"""

from neurodit.metrics.coherence import (
    coherence_report,
    gradient_anisotropy,
    reformat_ssim,
    slice_correlation_profile,
)
from neurodit.metrics.memorization import correlation_matrix, memorization_audit
from neurodit.metrics.mmd import mmd_test, monai_linear_mmd, volume_features
from neurodit.metrics.msssim import (
    MSSSIMSettings,
    bootstrap_ci,
    choose_settings,
    ms_ssim_3d,
    pairwise_msssim,
    sample_pairs,
)

__all__ = [
    "MSSSIMSettings", "bootstrap_ci", "choose_settings", "coherence_report", "correlation_matrix",
    "gradient_anisotropy", "memorization_audit", "mmd_test", "monai_linear_mmd", "ms_ssim_3d",
    "pairwise_msssim", "reformat_ssim", "sample_pairs", "slice_correlation_profile", "volume_features",
]
