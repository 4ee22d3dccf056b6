"""Scanner / protocol effects of the ``study`` model: one :class:`SiteEffects` per site, applied after
the anatomy (:func:`apply_site`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from neurodit.data.phantom.templates import basis, separable
from neurodit.errors import NeuroditError

BIAS_SPACING_MM = 64.0


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


def resolve_site(site: str | SiteEffects | None, cohort: str) -> SiteEffects:
    """``None`` -> the cohort's default site (camcan-like / adni-like); a name -> :data:`SITES`."""
    if isinstance(site, SiteEffects):
        return site
    name = cohort if site is None else str(site)
    if name not in SITES:
        raise NeuroditError(f"phantom: unknown site '{name}' (choose {', '.join(SITES)})")
    return SITES[name]


def blur_in_support(vol: np.ndarray, support: np.ndarray, fwhm_mm: float, voxel_size: float) -> np.ndarray:
    """(D, H, W) float32: Gaussian PSF of FWHM ``fwhm_mm`` normalised inside ``support`` ((D, H, W) float32
    0/1, the brain), so the outline stays where the brain mask puts it; 0 outside the support."""
    sigma = fwhm_mm / 2.3548 / voxel_size
    num = ndimage.gaussian_filter(vol, sigma, mode="constant")
    den = ndimage.gaussian_filter(support, sigma, mode="constant")
    return np.where(support > 0, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def apply_site(vol: np.ndarray, site: SiteEffects, voxel_size: float, rng: np.random.Generator,
               noise: bool = True) -> np.ndarray:
    """Scanner / protocol effects on one (D, H, W) MD map in mm²/s (0 = background), in this order:
    blur (Gaussian PSF of FWHM ``blur_fwhm_mm``, normalised inside the brain so the outline stays
    where the brain mask puts it), MD × ``md_scale`` × smooth bias field exp(b(x)) with b a 64 mm
    Gaussian-basis field of pointwise sd ``bias_sd``, then × (1 + N(0, ``noise_sd``)) per voxel."""
    out = np.asarray(vol, np.float32).copy()
    support = (out > 0).astype(np.float32)
    if site.blur_fwhm_mm > 0:
        out = blur_in_support(out, support, site.blur_fwhm_mm, voxel_size)
    gain = np.float32(site.md_scale)
    if site.bias_sd > 0:
        bases = tuple(basis(np.arange(n) * voxel_size, BIAS_SPACING_MM) for n in out.shape)
        coef = rng.normal(0.0, site.bias_sd, tuple(b.shape[1] for b in bases)).astype(np.float32)
        out *= gain * np.exp(separable(bases, coef)).astype(np.float32)
    else:
        out *= gain
    if noise and site.noise_sd > 0:
        out *= 1.0 + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(site.noise_sd)
    return out
