"""The ``study`` model's per-grid maps (lesion position probabilities, sulcal widening, the fine
deformation's profile) and its white-matter hyperintensities and lacunes (STRIVE, Wardlaw et al. 2013)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.data.phantom.effects import (
    FINE_WARP_HALF_AXES_MM,
    SULCAL_DILATION_MM,
    VENTRICLE_CENTRE_MM,
    VENTRICLE_SIGMA_MM,
    WARP_FINE_SPACING_MM,
    StudyEffects,
)
from neurodit.data.phantom.templates import Templates, basis, gauss_1d, outer3


@dataclass(frozen=True)
class StudyMaps:
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


_STUDY_MAPS: dict[tuple[float, float], StudyMaps] = {}


def study_maps(t: Templates, periventricular: float) -> StudyMaps:
    key = (t.voxel_size, float(periventricular))
    if key in _STUDY_MAPS:
        return _STUDY_MAPS[key]
    c = VENTRICLE_CENTRE_MM
    envelope = outer3(*(gauss_1d(t.axes_mm[k], c[k], VENTRICLE_SIGMA_MM[k]) for k in range(3)))
    ventricles = (t.csf > 0.5) & (envelope > 0.3)
    # distance (mm) of every voxel to the ventricles: periventricular WM is where WMH cluster
    d_vent = ndimage.distance_transform_edt(~ventricles) * t.voxel_size
    deep_wm = np.clip((t.wm - 0.5) / 0.5, 0.0, 1.0) ** 2
    p_wmh = deep_wm * (1.0 + periventricular * np.exp(-d_vent / 8.0))
    central = outer3(*(gauss_1d(t.axes_mm[k], (0.0, -5.0, 5.0)[k], (25.0, 30.0, 20.0)[k]) for k in range(3)))
    p_lac = np.clip(t.wm + t.gm - 0.5, 0.0, None) * central
    # sulcal widening: the cortical CSF grows by ~4 mm (>= 1 voxel; ventricles are left to the warp)
    r_vox = max(1, int(round(SULCAL_DILATION_MM / t.voxel_size)))
    dil = ndimage.grey_dilation(t.csf, size=(2 * r_vox + 1,) * 3)
    # ... at the convexity: the deep brain and the medial temporal lobe (whose atrophy is AD's, not
    # age's, here) are spared by the same radial profile as the fine deformation
    delta = np.minimum(np.clip(dil - t.csf, 0.0, None), t.gm) * (envelope < 0.3) * _fine_weight(t)
    out = StudyMaps(
        wmh_cdf=np.cumsum(p_wmh.ravel()) / p_wmh.sum(), lacune_cdf=np.cumsum(p_lac.ravel()) / p_lac.sum(),
        sulcal_delta=delta.astype(np.float32),
        fine_basis=tuple(basis(a, WARP_FINE_SPACING_MM) for a in t.axes_mm),
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


def draw_lesions(t: Templates, row: dict | pd.Series, s: StudyEffects, rng: np.random.Generator):
    """WMH and lacune maps in template space, from the subject's counts in ``row``.

    Returns ``(wmh_amp, lacune, info)``: (D, H, W) relative MD increase (max over patches of
    amplitude × occupancy × WM fraction), (D, H, W) lacune occupancy (CSF fraction it imposes) and
    ``{"wmh_ml", "lacune_ml"}`` (partial-volume sums in template space).
    """
    maps = study_maps(t, s.wmh_periventricular)
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
