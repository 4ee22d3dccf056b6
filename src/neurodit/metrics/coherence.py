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

import warnings

import numpy as np
import torch

from neurodit.metrics.msssim import blur, gaussian_1d, sample_pairs

PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # plane name -> axis held fixed in (D, H, W)


def _ssim_kernel(h: int, w: int) -> int:
    k = min(7, h, w)
    return k if k % 2 == 1 else k - 1


def plane_ssim(a: torch.Tensor, b: torch.Tensor, ia: np.ndarray, ib: np.ndarray, axis: int,
               data_range: float = 2.0, batch_size: int = 32) -> torch.Tensor:
    """2D SSIM (Wang et al. 2004, Gaussian window) of every plane with ``axis`` fixed, per pair.

    a (N, D, H, W), b (M, D, H, W) float32; pairs (a[ia[p]], b[ib[p]]) -> (P, n_planes) mean SSIM
    of each plane. The 2D windows of all planes are one separable filter over the two in-plane axes
    of the whole volume, so each volume's local means/variances are computed once, not per pair.
    """
    in_plane = [ax for ax in (1, 2, 3) if ax != axis + 1]  # the two axes of each plane in (B, D, H, W)
    k = _ssim_kernel(a.shape[in_plane[0]], a.shape[in_plane[1]])
    win = gaussian_1d(k, 1.5 * k / 11)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def stats(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = blur(v, win, in_plane)
        return mu, blur(v * v, win, in_plane) - mu * mu

    mua, va = stats(a)
    mub, vb = (mua, va) if b is a else stats(b)
    out = []
    for c in range(0, len(ia), batch_size):
        i, j = torch.as_tensor(ia[c:c + batch_size]), torch.as_tensor(ib[c:c + batch_size])
        mx, my = mua[i], mub[j]
        cov = blur(a[i] * b[j], win, in_plane) - mx * my
        smap = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (va[i] + vb[j] + c2))
        out.append(smap.mean(dim=in_plane))  # (batch, n_planes): mean over each plane's valid region
    return torch.cat(out)


def reformat_ssim(a: np.ndarray, b: np.ndarray | None, mask: np.ndarray, max_pairs: int = 200,
                  seed: int = 0, data_range: float = 2.0, min_brain_fraction: float = 0.05) -> dict:
    """Mean 2D SSIM per plane orientation over pairs of (N, D, H, W) volumes (model range).

    ``b`` None: pairs within ``a`` (i < j); else pairs (a_i, b_j). Planes are kept when their brain
    area is at least ``min_brain_fraction`` of the largest one. Returns ``{plane: {"mean", "n_pairs"}}``.
    """
    mask = np.asarray(mask, dtype=bool)
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(len(a), None if b is None else len(b), max_pairs, rng)
    from neurodit.metrics.volumes import chunk_size, is_lazy

    lazy = is_lazy(a) or is_lazy(b)
    if not lazy:
        ta = torch.as_tensor(np.asarray(a, dtype=np.float32))
        tb = ta if b is None else torch.as_tensor(np.asarray(b, dtype=np.float32))

    def per_plane_scores(axis: int) -> torch.Tensor:  # (P, n_planes)
        if not lazy:
            return plane_ssim(ta, tb, pairs[:, 0], pairs[:, 1], axis, data_range)
        # on-disk sets: a few pairs at a time, reading only their volumes (each volume's plane statistics
        # do not depend on the others in the batch), so memory depends on neither N nor max_pairs
        parts = []
        step = max(1, chunk_size(a) // 2)
        for i in range(0, len(pairs), step):
            p = pairs[i:i + step]
            ua = np.unique(p[:, 0] if b is not None else p)
            ub = np.unique(p[:, 1]) if b is not None else ua
            xa = torch.as_tensor(np.asarray(a[ua], dtype=np.float32))
            xb = xa if b is None else torch.as_tensor(np.asarray(b[ub], dtype=np.float32))
            parts.append(plane_ssim(xa, xb, np.searchsorted(ua, p[:, 0]), np.searchsorted(ub, p[:, 1]), axis,
                                    data_range))
        return torch.cat(parts)

    out = {}
    with torch.no_grad():
        for name, axis in PLANES.items():
            area = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).sum(1)
            keep = torch.as_tensor(area >= min_brain_fraction * max(area.max(), 1))
            if len(pairs) == 0:
                out[name] = {"mean": float("nan"), "n_pairs": 0}
                continue
            per_plane = per_plane_scores(axis)  # (P, n_planes)
            scores = per_plane[:, keep].mean(1).double()
            out[name] = {"mean": float(scores.mean()), "n_pairs": int(len(pairs))}
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
    from neurodit.metrics.volumes import chunks, is_lazy

    def per_volume(fn, vols):  # (N, ...) rows are independent: on-disk sets go a few volumes at a time
        if not is_lazy(vols):
            return fn(vols, mask, axis)
        return np.concatenate([fn(c, mask, axis) for _, c in chunks(vols)])

    prof_r = per_volume(slice_correlation_profile, real)
    prof_s = per_volume(slice_correlation_profile, synthetic)
    with warnings.catch_warnings():  # slices outside the brain are all-NaN columns: expected
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_r, mean_s = np.nanmean(prof_r, axis=0), np.nanmean(prof_s, axis=0)
    an_r, an_s = per_volume(gradient_anisotropy, real), per_volume(gradient_anisotropy, synthetic)
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
