"""The MNI152 tissue templates on the phantom grid (cached per voxel size) and the smooth spatial bases
every random field of the phantom is built from."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from neurodit.data.phantom.effects import (
    FIELD_SPACING_MM,
    HIPPOCAMPUS_MM,
    SEX_PATTERN_MM,
    SEX_PATTERN_SIGMA_MM,
    WARP_SPACING_MM,
)
from neurodit.errors import NeuroditError


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


def gauss_1d(x: np.ndarray, c: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - c) / sigma) ** 2)


def basis(x_mm: np.ndarray, spacing: float) -> np.ndarray:
    """(n, m) Gaussian bumps (σ = spacing/2) on control points covering ``x_mm``; unit-norm rows."""
    ctrl = np.arange(x_mm.min() - spacing / 2, x_mm.max() + spacing, spacing)
    b = np.exp(-0.5 * ((x_mm[:, None] - ctrl[None, :]) / (spacing / 2)) ** 2)
    return (b / np.linalg.norm(b, axis=1, keepdims=True)).astype(np.float32)


def separable(bases: tuple[np.ndarray, np.ndarray, np.ndarray], coef: np.ndarray) -> np.ndarray:
    """Tensor-product expansion: (D,a) x (H,b) x (W,c) bases, (a,b,c) coefficients -> (D,H,W)."""
    bx, by, bz = bases
    t = coef @ bz.T                                   # (a, b, W)
    t = np.einsum("jb,abk->ajk", by, t)               # (a, H, W)
    return np.tensordot(bx, t, axes=1)                # (D, H, W)


def outer3(fx: np.ndarray, fy: np.ndarray, fz: np.ndarray) -> np.ndarray:
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
        sex += sign * outer3(*(gauss_1d(axes[k], centre[k], SEX_PATTERN_SIGMA_MM) for k in range(3)))
    # soft-edged ellipsoids: 1 inside, 0 outside, logistic edge ~1.5 mm wide at the surface
    hip = np.zeros(shape, np.float32)
    for centre, radii in HIPPOCAMPUS_MM:
        r2 = sum(((axes[k] - centre[k]) / radii[k]).reshape([-1 if j == k else 1 for j in range(3)]) ** 2
                 for k in range(3))
        hip = np.maximum(hip, 1.0 / (1.0 + np.exp((np.sqrt(r2) - 1.0) / 0.1)))
    out_t = Templates(
        voxel_size=float(voxel_size), gm=gm, wm=wm, csf=csf, mask=mask, affine=affine, axes_mm=axes,
        sex_pattern=sex.astype(np.float32), hippocampus=hip.astype(np.float32),
        field_basis=tuple(basis(a, FIELD_SPACING_MM) for a in axes),
        warp_basis=tuple(basis(a, WARP_SPACING_MM) for a in axes),
    )
    # the instance is shared through the cache: make every array read-only
    for arr in (out_t.gm, out_t.wm, out_t.csf, out_t.mask, out_t.affine, out_t.sex_pattern, out_t.hippocampus,
                *out_t.axes_mm, *out_t.field_basis, *out_t.warp_basis):
        arr.setflags(write=False)
    return out_t
