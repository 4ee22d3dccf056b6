"""Local texture statistics of MD volumes inside the brain mask: the texture block of the judge's feature view.

The judge's encoder (:mod:`neurodit.metrics.encoder`) ends in a global average pool, which averages
voxel-scale texture away: class mean + white voxel noise kept precision 1.00 in its features. These
statistics measure that texture directly, per volume, over the voxels of the evaluation mask whose
whole stencil lies inside the mask (the mask eroded by the stencil's radius, so the brain's outline
and the background never enter a texture number):

- ``grad_mean`` / ``grad_sd``: mean and sd of the gradient magnitude (central differences);
- ``local_sd_mean`` / ``local_sd_sd``: mean and sd of the 3x3x3 local standard deviation;
- ``laplacian1``: mean |Laplacian| (6-neighbour stencil), the finest scale;
- ``laplacian2``: mean |Laplacian| of the 3x3x3-box-smoothed volume, a coarser scale
  (the pair says whether the energy sits at the voxel scale, as in white noise, or above it);
- ``highpass_lag1``: the lag-1 autocorrelation of the high-pass residual (volume minus its 3x3x3 box mean),
  averaged over the three axes: spatially correlated detail (real tissue, partial volume) gives > 0
  (0.49 on the 4 mm demo cohort), independent voxel noise -0.05 (the box mean shares each voxel
  with its neighbours: (-2/27 + 18/729) / (26/27)).

These are the classic first-order texture measures (gradient and local-variance statistics, Haralick et
al. 1973 in spirit; Laplacian-of-smoothed scales as in Lindeberg 1998 "Feature detection with automatic
scale selection"), computed in model range [-1, 1] (:class:`neurodit.data.normalize.Normalization`), float64
reductions. Whole-brain rather than per-region: 7 numbers keep the feature view's width below the usual set
sizes (the Fréchet covariance needs N > F), and a per-region split at 4-6 mm would rest on a few hundred voxels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError

__all__ = ["TEXTURE_STATS", "texture_statistics"]

TEXTURE_STATS = ("grad_mean", "grad_sd", "local_sd_mean", "local_sd_sd", "laplacian1", "laplacian2",
                 "highpass_lag1")
# stencil radius (voxels) of each map: the mask is eroded by it before the map is averaged
_RADIUS = {"grad": 1, "local_sd": 1, "laplacian1": 1, "laplacian2": 2, "highpass": 2}
MIN_VOXELS = 27  # fewer voxels left by the erosion: too small a brain or grid for texture numbers


def _box3(x: torch.Tensor) -> torch.Tensor:
    """3x3x3 mean of (B, 1, D, H, W), same shape (replicated edges; edge voxels are masked out anyway)."""
    return F.avg_pool3d(F.pad(x, [1] * 6, mode="replicate"), 3, stride=1)


def _laplacian(x: torch.Tensor, step: int) -> torch.Tensor:
    """6-neighbour Laplacian with neighbour distance ``step`` of (B, 1, D, H, W), same shape."""
    p = F.pad(x, [step] * 6, mode="replicate")
    s = step
    core = p[:, :, s:-s, s:-s, s:-s]
    lap = -6.0 * core
    for ax in (2, 3, 4):
        lo = p.narrow(ax, 0, x.shape[ax])
        hi = p.narrow(ax, 2 * s, x.shape[ax])
        # crop the other two axes to the core
        for other in (2, 3, 4):
            if other != ax:
                lo, hi = lo.narrow(other, s, x.shape[other]), hi.narrow(other, s, x.shape[other])
        lap = lap + lo + hi
    return lap


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """(D, H, W) bool mask eroded by a (2r+1)^3 cube (voxels whose whole cube is inside the mask)."""
    m = mask[None, None].float()
    return (-F.max_pool3d(-m, 2 * r + 1, stride=1, padding=r))[0, 0] > 0.5


def _masked_mean_sd(v: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd over the voxels of mask m (D, H, W) of maps v (B, 1, D, H, W) -> two (B,) float64."""
    vals = v[:, 0][:, m].double()  # (B, M)
    return vals.mean(1), vals.std(1, unbiased=False)


def _lag1(r: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Lag-1 autocorrelation of residuals r (B, 1, D, H, W) over voxel pairs both in m, averaged over axes -> (B,)."""
    out = []
    rd, md = r[:, 0].double(), m
    for ax in (1, 2, 3):  # axes of (B, D, H, W)
        n = rd.shape[ax]
        a, b = rd.narrow(ax, 0, n - 1), rd.narrow(ax, 1, n - 1)
        pair = md.narrow(ax - 1, 0, n - 1) & md.narrow(ax - 1, 1, n - 1)  # (D', H', W')
        av, bv = a[:, pair], b[:, pair]  # (B, P)
        av, bv = av - av.mean(1, keepdim=True), bv - bv.mean(1, keepdim=True)
        out.append((av * bv).sum(1) / ((av * av).sum(1) * (bv * bv).sum(1)).sqrt().clamp_min(1e-30))
    return torch.stack(out).mean(0)


@torch.no_grad()
def _batch_stats(x: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 1, D, H, W) float32 model range -> (B, len(TEXTURE_STATS)) float64, in TEXTURE_STATS order."""
    gz, gy, gx = torch.gradient(x, dim=(2, 3, 4))  # central differences, (B, 1, D, H, W) each
    grad = (gz * gz + gy * gy + gx * gx).sqrt()
    box = _box3(x)
    local_sd = (_box3(x * x) - box * box).clamp_min(0).sqrt()
    g_mu, g_sd = _masked_mean_sd(grad, masks["grad"])
    l_mu, l_sd = _masked_mean_sd(local_sd, masks["local_sd"])
    lap1, _ = _masked_mean_sd(_laplacian(x, 1).abs(), masks["laplacian1"])
    lap2, _ = _masked_mean_sd(_laplacian(box, 1).abs(), masks["laplacian2"])
    hp = _lag1(x - box, masks["highpass"])
    return torch.stack([g_mu, g_sd, l_mu, l_sd, lap1, lap2, hp], dim=1)


def texture_statistics(volumes_mm2s, mask: np.ndarray, norm: Normalization = Normalization(),
                       batch_size: int = 16, what: str = "volumes") -> np.ndarray:
    """(N, D, H, W) volumes in mm²/s (array or on-disk set) -> (N, 7) float64 texture statistics
    (columns :data:`TEXTURE_STATS`), over the evaluation ``mask`` (D, H, W) eroded per stencil.

    Streams ``batch_size`` volumes at a time. NeuroditError when the mask, eroded by 2 voxels, keeps fewer
    than :data:`MIN_VOXELS` voxels (too small a brain or grid for texture), naming ``what``.
    """
    shape = tuple(np.shape(volumes_mm2s))
    if len(shape) != 4 or shape[0] < 1:
        raise NeuroditError(f"texture statistics need (N, D, H, W) {what} with N >= 1, got shape {shape}")
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    if tuple(m.shape) != shape[1:]:
        raise NeuroditError(f"mask shape {tuple(m.shape)} differs from the {what}' grid {shape[1:]}")
    masks = {k: _erode(m, r) for k, r in _RADIUS.items()}
    kept = min(int(v.sum()) for v in masks.values())
    if kept < MIN_VOXELS:
        raise NeuroditError(f"the brain mask of {what} keeps {kept} voxels once eroded by {max(_RADIUS.values())}: "
                            f"too few for texture statistics (>= {MIN_VOXELS})")
    out = []
    for i in range(0, shape[0], batch_size):
        xb = np.asarray(volumes_mm2s[i:i + batch_size], dtype=np.float32)  # (B, D, H, W)
        xb = torch.from_numpy(np.ascontiguousarray(norm.to_model(xb), dtype=np.float32))[:, None]
        out.append(_batch_stats(xb, masks).numpy())
    stats = np.concatenate(out)
    if not np.all(np.isfinite(stats)):
        raise NeuroditError(f"texture statistics of {what} are not finite (constant volumes?)")
    return stats
