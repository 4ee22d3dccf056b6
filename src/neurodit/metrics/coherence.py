"""Through-plane coherence: checks of the planes the 2D mosaic model never sees.

The DiT is trained on mosaics of *axial* slices (axis 2 of the RAS (D, H, W) volume, ARCHITECTURE.md),
so nothing in the loss ties neighbouring axial slices together except the tiles sharing one image.
A model that draws each tile independently makes good axial slices that do not stack into a brain.
Three checks, all synthetic vs real:

1. 2D SSIM (Wang et al. 2004, single scale, Gaussian window) of sagittal (axis 0 fixed), coronal
   (axis 1 fixed) and axial (axis 2 fixed) reformats, averaged over the planes that hold brain, for
   real-real and real-synthetic pairs. A drop from real-real to real-synthetic that is larger in the
   sagittal/coronal planes than in the axial plane is the signature of incoherent stacking.
2. Slice-to-slice Pearson correlation profile along the tiled axis: r_k = corr(slice k, slice k+1)
   over in-mask voxels, per volume, averaged per set.
3. Gradient anisotropy: mean squared forward difference along the tiled axis divided by the mean of
   the two in-plane ones (inside the mask). Independently drawn slices raise it.
"""

from __future__ import annotations

import numpy as np
import torch

from neurodit.metrics.msssim import sample_pairs

PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # plane name -> axis held fixed in (D, H, W)


def _ssim_kernel(h: int, w: int) -> int:
    k = min(7, h, w)
    return k if k % 2 == 1 else k - 1


def ssim_2d(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean 2D SSIM per image; x, y: (B, 1, h, w) -> (B,). MONAI ``compute_ssim_and_cs`` (Gaussian)."""
    from monai.metrics.regression import compute_ssim_and_cs

    k = _ssim_kernel(x.shape[-2], x.shape[-1])
    s, _ = compute_ssim_and_cs(x, y, spatial_dims=2, kernel_size=(k, k), kernel_sigma=(1.5 * k / 11,) * 2,
                               data_range=data_range)
    return s.reshape(s.shape[0], -1).mean(1)


def _planes(vol: np.ndarray, axis: int, keep: np.ndarray) -> torch.Tensor:
    """(D, H, W) -> (n_keep, 1, h, w): the planes with the given axis fixed, only the kept ones."""
    p = np.moveaxis(vol, axis, 0)[keep]
    return torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))[:, None]


def reformat_ssim(a: np.ndarray, b: np.ndarray | None, mask: np.ndarray, max_pairs: int = 200,
                  seed: int = 0, data_range: float = 2.0, min_brain_fraction: float = 0.05) -> dict:
    """Mean 2D SSIM per plane orientation over pairs of (N, D, H, W) volumes (model range).

    ``b`` None: pairs within ``a`` (i < j); else pairs (a_i, b_j). Planes are kept when their brain
    area is at least ``min_brain_fraction`` of the largest one. Returns ``{plane: {"mean", "n_pairs"}}``.
    """
    mask = np.asarray(mask, dtype=bool)
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(len(a), None if b is None else len(b), max_pairs, rng)
    other = a if b is None else b
    out = {}
    for name, axis in PLANES.items():
        area = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).sum(1)
        keep = area >= min_brain_fraction * max(area.max(), 1)
        n_keep = int(keep.sum())
        scores = []
        for c in range(0, len(pairs), 16):  # 16 pairs at a time: (16 * n_keep, 1, h, w) per batch
            chunk = pairs[c:c + 16]
            x = torch.cat([_planes(a[i], axis, keep) for i, _ in chunk])
            y = torch.cat([_planes(other[j], axis, keep) for _, j in chunk])
            s = ssim_2d(x, y, data_range).reshape(len(chunk), n_keep).mean(1)  # mean over planes
            scores.extend(s.double().tolist())
        out[name] = {"mean": float(np.mean(scores)) if scores else float("nan"), "n_pairs": len(scores)}
    return out


def slice_correlation_profile(volumes: np.ndarray, mask: np.ndarray, axis: int = 2,
                              min_voxels: int = 10) -> np.ndarray:
    """Pearson r between neighbouring slices along ``axis``: (N, D, H, W) -> (N, S-1), NaN where a
    slice pair has fewer than ``min_voxels`` common in-mask voxels or no variance."""
    v = np.moveaxis(np.asarray(volumes, dtype=np.float64), axis + 1, 1)  # (N, S, ...) slices first
    m = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0)  # (S, ...)
    n, s = v.shape[:2]
    out = np.full((n, s - 1), np.nan)
    for k in range(s - 1):
        common = m[k] & m[k + 1]
        if common.sum() < min_voxels:
            continue
        x = v[:, k][:, common]  # (N, V)
        y = v[:, k + 1][:, common]
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
        den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where(den > 0, (x * y).sum(1) / den, np.nan)
    return out


def gradient_anisotropy(volumes: np.ndarray, mask: np.ndarray, axis: int = 2) -> np.ndarray:
    """Through-plane / in-plane mean squared forward difference inside the mask: (N, D, H, W) -> (N,)."""
    v = np.asarray(volumes, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    energy = []
    for ax in range(3):
        d = np.diff(v, axis=ax + 1)  # (N, ...) forward difference along spatial axis ax
        both = np.logical_and(np.take(mask, range(mask.shape[ax] - 1), axis=ax),
                              np.take(mask, range(1, mask.shape[ax]), axis=ax))
        energy.append((d[:, both] ** 2).mean(1))
    in_plane = [energy[ax] for ax in range(3) if ax != axis]
    return energy[axis] / np.maximum(0.5 * (in_plane[0] + in_plane[1]), 1e-12)


def coherence_report(real: np.ndarray, synthetic: np.ndarray, mask: np.ndarray, axis: int = 2,
                     max_pairs: int = 200, seed: int = 0) -> dict:
    """All three checks for (N, D, H, W) volumes in model range; JSON-ready except ``_arrays``."""
    rr = reformat_ssim(real, None, mask, max_pairs, seed)
    rs = reformat_ssim(real, synthetic, mask, max_pairs, seed + 1)
    ssim = {p: {"real_real": rr[p]["mean"], "real_syn": rs[p]["mean"],
                "drop": rr[p]["mean"] - rs[p]["mean"], "n_pairs": rs[p]["n_pairs"]} for p in PLANES}
    tiled = [p for p, a in PLANES.items() if a == axis][0]
    through = [p for p in PLANES if p != tiled]
    excess = float(np.mean([ssim[p]["drop"] for p in through]) - ssim[tiled]["drop"])
    prof_r = slice_correlation_profile(real, mask, axis)
    prof_s = slice_correlation_profile(synthetic, mask, axis)
    mean_r, mean_s = np.nanmean(prof_r, axis=0), np.nanmean(prof_s, axis=0)
    an_r, an_s = gradient_anisotropy(real, mask, axis), gradient_anisotropy(synthetic, mask, axis)
    return {
        "tiled_axis": axis,
        "ssim_2d": ssim,
        "through_plane_excess_drop": excess,
        "slice_corr": {
            "real_mean": float(np.nanmean(prof_r)), "syn_mean": float(np.nanmean(prof_s)),
            "mean_abs_profile_diff": float(np.nanmean(np.abs(mean_r - mean_s))),
            "real_profile": [None if np.isnan(x) else float(x) for x in mean_r],
            "syn_profile": [None if np.isnan(x) else float(x) for x in mean_s],
        },
        "anisotropy": {"real_mean": float(an_r.mean()), "syn_mean": float(an_s.mean()),
                       "ratio_syn_over_real": float(an_s.mean() / max(an_r.mean(), 1e-12))},
        "_arrays": {"real_profile": mean_r, "syn_profile": mean_s},
    }
