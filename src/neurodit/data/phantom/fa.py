"""Fractional anisotropy (FA) of a phantom subject, from the same latent subject as its MD map.

FA is not painted on its own: each tissue gets an anisotropic part ``s`` (the norm of the diffusion
tensor's deviatoric part, mm²/s), the parts of the tissues in a voxel add (partial-volume mixture of
co-aligned compartments, volume-weighted tensors), and the voxel's FA follows from ``s`` and the voxel's
own MD ``M`` (a tensor with mean M and deviatoric norm s has ``|λ|² = 3 M² + s²``)::

    FA = sqrt(3/2) · s / sqrt(3 M² + s²)                  (Basser & Pierpaoli 1996 definition)

So wherever the MD map rises locally (partial volume with CSF, atrophy, enlarged ventricles, white-matter
hyperintensities, lacunes) FA falls with it, and a voxel whose MD is free-water-like has FA near CSF's.

Tissue values (pure tissue, at or before 30 years; typical adult DTI values at b ≈ 1000 s/mm²):
WM FA 0.60 (0.5-0.7 over the tract pattern), cortical GM 0.17, CSF 0.07 (its noise floor: free water is
isotropic). WM FA falls by 0.0025 per year after 30, -0.145 at 88 years (Westlye et al. 2010, life-span
DTI: WM FA peaks around the third to fourth decade and declines after). The tissue's s is set from its target
FA at the subject's own tissue MD, so pure tissue has exactly its target FA; what lowers FA beyond that is
what raises MD locally (partial volume with CSF, atrophy, ventricles, lacunes; WMH raise MD by w = 20-50 %
and lose s × (1 - 0.5 w), so their FA falls by about (1 - 0.5 w) / (1 + w): 27-50 %, as WMH FA is well
below normal-appearing WM's; the MD map's smooth relative field, ±3 %, moves FA the other way) and, in the study model, AD (WM FA × (1 - 0.08 · severity)).

The tract pattern is scalar (no orientation): deep WM far from its boundary (corpus callosum, internal
capsule, centrum semiovale) is more anisotropic than juxtacortical WM, plus a smooth random field with a
fixed seed; both are fixed per template grid. Per subject: the WM FA level (age + individual sd) and a
small smooth relative field (own random stream: the MD draws do not move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.data.phantom.templates import Templates, basis, separable

TISSUE_FA = {"wm": 0.60, "gm": 0.17, "csf": 0.07}  # pure tissue, at or before the age onset
TRACT_SPACING_MM = 20.0      # control points of the fixed random part of the tract pattern
TRACT_DEPTH_MM = 6.0         # WM depth (distance to the WM boundary) at which FA is ~63 % of the way up
TRACT_SEED = 22              # the fixed pattern's seed (issue 22): the same pattern for every subject
FA_STREAM = 9                # spawn key of the subject's FA stream (7, 8: the study model's)


@dataclass(frozen=True)
class FAEffects:
    """FA model sizes (docs/PHANTOM.md "FA"); FA is unitless, values are of pure tissue."""

    wm: float = TISSUE_FA["wm"]
    gm: float = TISSUE_FA["gm"]
    csf: float = TISSUE_FA["csf"]
    wm_age_per_year: float = 0.0025 # WM FA loss per year after ``age_onset`` (Westlye et al. 2010)
    age_onset: float = 30.0
    wm_sd: float = 0.02             # individual WM FA level sd
    gm_sd: float = 0.01
    tract_amp: float = 0.17         # relative WM FA modulation by the tract pattern T in [-1, 1]
    field_sd: float = 0.03          # per-subject smooth relative WM FA field, pointwise sd
    wmh_loss: float = 0.5           # WMH: relative loss of s per relative MD increase (axonal loss)
    ad_wm: float = 0.08             # study model: relative WM FA loss at AD severity 1 (beyond its MD rise)
    noise_sd: float = 0.03          # classic model's relative voxel noise (the study model uses the site's)


_TRACTS: dict[float, np.ndarray] = {}


def tract_pattern(t: Templates) -> np.ndarray:
    """(D, H, W) float32 in [-1, 1], read-only, cached per grid: the fixed, orientation-free tract pattern.

    Half WM depth (1 - exp(-d / 6 mm), d = distance to the edge of WM > 0.5; standardised over WM) and
    half a unit-sd smooth random field (20 mm control points, seed 22), through tanh(raw / 2)."""
    if t.voxel_size in _TRACTS:
        return _TRACTS[t.voxel_size]
    core = t.wm > 0.5
    depth = 1.0 - np.exp(-ndimage.distance_transform_edt(core) * t.voxel_size / TRACT_DEPTH_MM)
    inside = depth[core]
    z = (depth - inside.mean()) / max(float(inside.std()), 1e-6)
    bases = tuple(basis(a, TRACT_SPACING_MM) for a in t.axes_mm)
    rng = np.random.default_rng(TRACT_SEED)
    field = separable(bases, rng.standard_normal(tuple(b.shape[1] for b in bases)).astype(np.float32))
    out = np.tanh(0.5 * (z + field)).astype(np.float32)
    out.setflags(write=False)
    _TRACTS[t.voxel_size] = out
    return out


def deviatoric(fa: np.ndarray | float, md: np.ndarray | float) -> np.ndarray:
    """Deviatoric norm s (mm²/s) of a tensor with this FA and MD: the inverse of :func:`fa_from`."""
    fa = np.clip(np.asarray(fa, np.float32), 0.0, 0.99)
    return np.asarray(md, np.float32) * fa * np.sqrt(3.0 / (1.5 - fa * fa)).astype(np.float32)


def fa_from(s: np.ndarray, md: np.ndarray) -> np.ndarray:
    """FA (same shape, float32, in [0, 1]) from deviatoric norm ``s`` and mean diffusivity ``md``
    (mm²/s); 0 where both are 0."""
    s = np.asarray(s, np.float32)
    den = np.sqrt(3.0 * np.asarray(md, np.float32) ** 2 + s * s)
    return np.where(den > 0, np.sqrt(1.5) * s / np.maximum(den, 1e-12), 0.0).astype(np.float32)


def fa_latents(row: dict | pd.Series, f: FAEffects, rng: np.random.Generator) -> dict[str, float]:
    """The subject's pure-tissue FA levels ``{"wm_fa", "gm_fa"}`` (first draws of its FA stream)."""
    aging = f.wm_age_per_year * max(0.0, float(row["age"]) - f.age_onset)
    wm = f.wm - aging + rng.normal(0.0, f.wm_sd)
    gm = f.gm + rng.normal(0.0, f.gm_sd)
    return {"wm_fa": float(np.clip(wm, 0.2, 0.85)), "gm_fa": float(np.clip(gm, 0.05, 0.3))}


def tissue_aniso(t: Templates, lat: dict[str, float], wm_md: float, gm_md: float, csf_md: float,
                 gm: np.ndarray, csf: np.ndarray, beta: float, focal: list[tuple[str, np.ndarray]], f: FAEffects,
                 rng: np.random.Generator) -> np.ndarray:
    """(D, H, W) float32 deviatoric norm s (mm²/s) in template space, the FA counterpart of the MD mixture.

    ``gm`` / ``csf``: the fractions the MD map used (after sulcal widening), ``beta`` its GM -> CSF
    atrophy, ``focal``: the MD map's focal changes in order, ("csf", (D, H, W) fraction turned into CSF:
    hippocampal atrophy, lacunes) or ("wmh", (D, H, W) relative MD increase w: s × (1 - wmh_loss · w),
    axonal loss). Each tissue's s gives its target FA at the subject's own tissue MD.
    """
    nb = tuple(b.shape[1] for b in t.field_basis)
    field = separable(t.field_basis, rng.normal(0.0, f.field_sd, nb).astype(np.float32))
    wm_fa = np.clip(lat["wm_fa"] * (1.0 + f.tract_amp * tract_pattern(t) + field), 0.05, 0.9)
    s_csf = deviatoric(f.csf, csf_md)
    s = t.wm * deviatoric(wm_fa, wm_md)
    s += gm * ((1.0 - beta) * deviatoric(lat["gm_fa"], gm_md)) + (csf + beta * gm) * s_csf
    for kind, m in focal:  # the MD map's focal changes, in its order
        s = s * (1.0 - m) + m * s_csf if kind == "csf" else s * (1.0 - f.wmh_loss * m)
    return s.astype(np.float32)


__all__ = ["FAEffects", "TISSUE_FA", "tract_pattern", "deviatoric", "fa_from", "fa_latents", "tissue_aniso"]
