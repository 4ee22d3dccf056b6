"""The authors' evaluation protocol (``--protocol paper``), so our numbers can sit beside theirs.

As far as we can reconstruct it (public notebooks of a co-author's group; docs/NOTES.md,
"The authors' evaluation protocol"):
- each volume scaled to [0, 1] (here: per-volume min-max; MD background is 0 so this is x / max(x)),
  resized to 64^3 (here: trilinear, ``torch.nn.functional.interpolate``; their centre crop of the
  1 mm MNI grid is skipped because our grids already span the brain's field of view);
- MS-SSIM: MONAI 3D, ``data_range=1``, Gaussian ``kernel_size=2`` (sigma 1.5), the standard 5 scales;
- "MMD": MONAI ``MMDMetric`` called on one pair of volumes at a time, which reduces to the voxelwise
  mean squared difference of the two volumes, averaged over pairs. This is a distance between
  individual volumes, NOT a two-sample test: it is large for two different real subjects and zero
  only for identical volumes. Our kernel MMD (``neurodit.metrics.mmd``) is the two-sample statistic.
  (A variant summing instead of averaging the squared differences is this value x 64^3 = 262,144.)
Pairs: real-real, real-synthetic, synthetic-synthetic; a seeded subset when there are too many.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neurodit.metrics.msssim import (
    STANDARD_WEIGHTS,
    MSSSIMSettings,
    bootstrap_ci,
    ms_ssim_pairs,
    sample_pairs,
)

PAPER_SHAPE = (64, 64, 64)
PAPER_SETTINGS = MSSSIMSettings(kernel_size=2, scales=5, kernel_sigma=1.5, weights=STANDARD_WEIGHTS,
                                data_range=1.0)


def to_paper_space(volumes_mm2s: np.ndarray, shape: tuple[int, int, int] = PAPER_SHAPE) -> np.ndarray:
    """(N, D, H, W) mm²/s -> (N, 64, 64, 64) float32 in [0, 1]: per-volume min-max, trilinear resize."""
    v = torch.as_tensor(np.asarray(volumes_mm2s, dtype=np.float32))
    lo = v.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = v.flatten(1).max(1).values.view(-1, 1, 1, 1)
    v = (v - lo) / torch.clamp(hi - lo, min=1e-12)
    out = F.interpolate(v[:, None], size=shape, mode="trilinear", align_corners=False)[:, 0]
    return out.clamp(0, 1).numpy()


def pair_msd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Voxelwise mean squared difference per pair (the paper's per-pair "MMD"): (P, ...) x 2 -> (P,)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return (d.reshape(len(d), -1) ** 2).mean(1)


def paper_protocol(real_mm2s: np.ndarray, syn_mm2s: np.ndarray, max_pairs: int = 500, seed: int = 0,
                   n_boot: int = 1000) -> dict:
    """MS-SSIM and per-pair "MMD" over real-real, real-syn, syn-syn pairs in the paper's space.

    Returns ``{"msssim": {group: {mean, ci95, n_pairs}}, "mmd_pairwise_msd": {group: {...}},
    "settings": {...}}``; MS-SSIM and MSD are computed on the same pairs.
    """
    real, syn = to_paper_space(real_mm2s), to_paper_space(syn_mm2s)
    groups = {"real_real": (real, None), "real_syn": (real, syn), "syn_syn": (syn, None)}
    rng = np.random.default_rng(seed)
    ms, md = {}, {}
    for k, (a, b) in groups.items():
        pairs = sample_pairs(len(a), None if b is None else len(b), max_pairs, rng)
        other = a if b is None else b
        if len(pairs) == 0:
            nan = {"mean": float("nan"), "ci95": [float("nan")] * 2, "n_pairs": 0}
            ms[k], md[k] = dict(nan), dict(nan)
            continue
        s_vals = ms_ssim_pairs(a, b, pairs, PAPER_SETTINGS)  # per-volume statistics cached
        d_vals = np.concatenate([pair_msd(a[pairs[c:c + 64, 0]], other[pairs[c:c + 64, 1]])
                                 for c in range(0, len(pairs), 64)])  # 64 pairs at a time: bounded memory
        ms[k] = {"mean": float(s_vals.mean()), "ci95": bootstrap_ci(s_vals, n_boot, rng=rng),
                 "n_pairs": int(len(pairs))}
        md[k] = {"mean": float(d_vals.mean()), "ci95": bootstrap_ci(d_vals, n_boot, rng=rng),
                 "n_pairs": int(len(pairs))}
    return {"msssim": ms, "mmd_pairwise_msd": md,
            "settings": {"shape": list(PAPER_SHAPE), "scaling": "per-volume min-max to [0, 1]",
                         "resize": "trilinear", **PAPER_SETTINGS.to_dict()}}
