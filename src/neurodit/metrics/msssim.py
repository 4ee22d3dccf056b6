"""3D multi-scale SSIM between volumes, with kernel size and scale count chosen to fit the grid.

MS-SSIM (Wang, Simoncelli & Bovik 2003, "Multiscale structural similarity for image quality
assessment"): for scales j = 1..M (each a 2x average-pool of the previous one)

    MS-SSIM(x, y) = [l_M(x, y)]^{w_M} * prod_{j=1..M} [cs_j(x, y)]^{w_j}

with l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2),
local statistics under a Gaussian window, C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data range.
We call MONAI's ``compute_ms_ssim`` (the function behind ``MultiScaleSSIMMetric``); the paper and the
MONAI tutorials use the same code, so values are comparable when the settings are the same.

MONAI's defaults (kernel 11, 5 scales) need >= 176 voxels a side (docs/NOTES.md), far more than our 32^3 to
96x112x96 grids. :func:`choose_settings` picks the most scales (<= 5) for which an odd kernel >= 3 still
fits at the coarsest scale, then the largest such kernel (<= 11); the weights are the first M of the
standard five, renormalised to sum to 1 (all five unchanged); sigma = 1.5 * kernel / 11 (the standard ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurodit.errors import NeuroditError

STANDARD_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass(frozen=True)
class MSSSIMSettings:
    """Settings of one MS-SSIM computation (recorded in metrics.json)."""

    kernel_size: int
    scales: int
    kernel_sigma: float
    weights: tuple[float, ...]
    data_range: float = 2.0  # model range [-1, 1]

    def to_dict(self) -> dict:
        return asdict(self)


def _fits(side: int, kernel: int, scales: int) -> bool:
    """True when MONAI's own size check passes *and* the coarsest scale still holds one full window.

    MONAI checks ``side // max(1, scales-1)**2 > kernel-1`` (exact for 5 scales, 16 = 2^4); the real
    requirement is ``side // 2**(scales-1) >= kernel`` (valid convolution at the coarsest scale).
    """
    return side // max(1, (scales - 1) ** 2) > kernel - 1 and side // 2 ** (scales - 1) >= kernel


def choose_settings(shape: Sequence[int], data_range: float = 2.0, max_kernel: int = 11,
                    max_scales: int = 5, min_scales: int = 2, what: str = "volume") -> MSSSIMSettings:
    """Largest number of scales (then largest odd kernel) that fits every side of ``shape``.

    Raises NeuroditError (instead of MONAI's ValueError deep inside) when not even ``min_scales``
    scales with a 3-voxel kernel fit, e.g. a 4x4x4 volume.
    """
    side = int(min(shape))
    for scales in range(max_scales, min_scales - 1, -1):
        kernels = [k for k in range(3, max_kernel + 1, 2) if _fits(side, k, scales)]
        if kernels:
            k = max(kernels)
            w = np.asarray(STANDARD_WEIGHTS[:scales], dtype=np.float64)
            # 5 scales: MONAI's / Wang et al.'s weights unchanged; fewer: the first ones, renormalised
            w = STANDARD_WEIGHTS if scales == len(STANDARD_WEIGHTS) else tuple(float(v) for v in w / w.sum())
            return MSSSIMSettings(kernel_size=k, scales=scales, kernel_sigma=1.5 * k / 11, weights=w,
                                  data_range=float(data_range))
    raise NeuroditError(
        f"{what} shape {tuple(int(s) for s in shape)} is too small for MS-SSIM: every side needs >= "
        f"{3 * 2 ** (min_scales - 1)} voxels ({min_scales} scales of a 3-voxel kernel)"
    )


def gaussian_1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian window, the same taps as MONAI's ``_gaussian_kernel`` (and pytorch_msssim's
    for odd sizes): positions (1-k)/2 .. (k-1)/2."""
    dist = torch.arange((1 - kernel_size) / 2, (1 + kernel_size) / 2, 1.0, dtype=torch.float64)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    return (g / g.sum()).float()


def blur(x: torch.Tensor, win: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of ``x`` along ``axes`` (each side shrinks by k-1).

    Written as k shifted multiply-adds per axis: on CPU this is ~6x faster than the grouped
    ``conv3d`` MONAI uses (measured on 32^3) and equal to it up to float rounding, because the 3D
    Gaussian kernel is the outer product of 1D windows.
    """
    k = int(win.numel())
    taps = [float(t) for t in win]
    for ax in axes:
        n = x.shape[ax] - k + 1
        x = sum(taps[i] * x.narrow(ax, i, n) for i in range(k))
    return x


def _scale_stats(v: torch.Tensor, settings: MSSSIMSettings) -> list[tuple[torch.Tensor, ...]]:
    """Per scale: (x, mu = G*x, var = G*x^2 - mu^2) for a batch (B, D, H, W); scales by 2x avg-pool
    without padding (as MONAI; odd sides drop their last voxel)."""
    win = gaussian_1d(settings.kernel_size, settings.kernel_sigma)
    out = []
    for j in range(settings.scales):
        if j:
            v = F.avg_pool3d(v[:, None], kernel_size=2)[:, 0]  # (B, D, H, W) -> (B, D/2, H/2, W/2)
        mu = blur(v, win, (1, 2, 3))
        out.append((v, mu, blur(v * v, win, (1, 2, 3)) - mu * mu))
    return out


def _ms_ssim_from_stats(sa: list, sb: list, ia: np.ndarray, ib: np.ndarray,
                        settings: MSSSIMSettings) -> torch.Tensor:
    """MS-SSIM of pairs (sa[ia[p]], sb[ib[p]]) from precomputed per-volume statistics -> (P,)."""
    win = gaussian_1d(settings.kernel_size, settings.kernel_sigma)
    c1 = (0.01 * settings.data_range) ** 2
    c2 = (0.03 * settings.data_range) ** 2
    ia_t, ib_t = torch.as_tensor(ia), torch.as_tensor(ib)
    w = torch.tensor(settings.weights, dtype=torch.float64)
    result = torch.ones(len(ia), dtype=torch.float64)
    for j, ((xa, mua, va), (xb, mub, vb)) in enumerate(zip(sa, sb, strict=True)):
        x, y = xa[ia_t], xb[ib_t]
        mx, my = mua[ia_t], mub[ib_t]
        cov = blur(x * y, win, (1, 2, 3)) - mx * my  # only the cross term needs a per-pair filter
        cs = (2 * cov + c2) / (va[ia_t] + vb[ib_t] + c2)
        if j == settings.scales - 1:  # luminance term only at the coarsest scale
            cs = cs * (2 * mx * my + c1) / (mx * mx + my * my + c1)
        val = torch.relu(cs.flatten(1).mean(1)).double()
        result = result * val ** w[j]
    return result


def ms_ssim_3d(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, settings: MSSSIMSettings,
               batch_size: int = 32, backend: str = "fast") -> np.ndarray:
    """MS-SSIM of each pair (x[i], y[i]); x, y: (B, D, H, W) or (B, 1, D, H, W) -> (B,) float64.

    Values in the units of ``settings.data_range`` (model range [-1, 1] -> data_range 2).
    backend "fast": our separable implementation (tests: equal to MONAI and pytorch_msssim to 1e-5);
    "monai": MONAI's ``compute_ms_ssim`` (the code behind ``MultiScaleSSIMMetric``).
    """
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.float32)
    if x.ndim == 5 and x.shape[1] == 1:  # (B, 1, D, H, W) -> (B, D, H, W)
        x, y = x[:, 0], y[:, 0]
    if x.shape != y.shape or x.ndim != 4:
        raise NeuroditError(f"MS-SSIM needs two (B, D, H, W) batches of one shape, got {tuple(x.shape)} "
                            f"and {tuple(y.shape)}")
    for s in x.shape[1:]:
        if not _fits(int(s), settings.kernel_size, settings.scales):
            raise NeuroditError(f"volume shape {tuple(x.shape[1:])} too small for MS-SSIM with kernel "
                                f"{settings.kernel_size} and {settings.scales} scales")
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            if backend == "monai":
                from monai.metrics.regression import compute_ms_ssim

                v = compute_ms_ssim(xb[:, None], yb[:, None], spatial_dims=3, data_range=settings.data_range,
                                    kernel_size=settings.kernel_size, kernel_sigma=settings.kernel_sigma,
                                    weights=settings.weights)
            elif backend == "fast":
                idx = np.arange(len(xb))
                v = _ms_ssim_from_stats(_scale_stats(xb, settings), _scale_stats(yb, settings), idx, idx,
                                        settings)
            else:
                raise NeuroditError(f"unknown MS-SSIM backend '{backend}' (use fast or monai)")
            out.append(v.reshape(-1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def ms_ssim_pairs(a: np.ndarray, b: np.ndarray | None, pairs: np.ndarray, settings: MSSSIMSettings,
                  batch_size: int = 64, max_cached_voxels: int = 2**26) -> np.ndarray:
    """MS-SSIM for index pairs (P, 2) into volume sets a (N, D, H, W) and b (M, D, H, W) (b None: a).

    The per-volume local means and variances are computed once per volume, not once per pair, when
    the set fits in ``max_cached_voxels`` voxels; otherwise each batch of pairs is computed directly.
    """
    from neurodit.metrics.volumes import is_lazy

    other = a if b is None else b
    n_vox = int(np.prod(np.shape(a)[1:]))
    if is_lazy(a) or is_lazy(b):
        # on-disk sets: never the whole set's statistics; a few pairs (2^22 voxels a side) per batch, read
        # as needed, so memory does not grow with N
        batch_size = max(1, min(batch_size, (1 << 22) // n_vox))
    if is_lazy(a) or is_lazy(b) or (len(a) + (0 if b is None else len(other))) * n_vox > max_cached_voxels:
        return np.concatenate([
            ms_ssim_3d(np.asarray(a[pairs[i:i + batch_size, 0]]), np.asarray(other[pairs[i:i + batch_size, 1]]),
                       settings, batch_size)
            for i in range(0, len(pairs), batch_size)
        ]) if len(pairs) else np.zeros(0)
    with torch.no_grad():
        sa = _scale_stats(torch.as_tensor(np.asarray(a, dtype=np.float32)), settings)
        sb = sa if b is None else _scale_stats(torch.as_tensor(np.asarray(b, dtype=np.float32)), settings)
        vals = [_ms_ssim_from_stats(sa, sb, pairs[i:i + batch_size, 0], pairs[i:i + batch_size, 1], settings)
                for i in range(0, len(pairs), batch_size)]
    return torch.cat(vals).numpy() if vals else np.zeros(0)


def sample_pairs(n_a: int, n_b: int | None = None, max_pairs: int = 1000,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Index pairs (P, 2): within one set (n_b None: all i < j) or across two sets (all i, j).

    When there are more than ``max_pairs`` pairs, a seeded random subset without replacement is
    taken (the paper used all pairs of 500 volumes: 124,750; we subsample to stay fast on CPU).
    """
    rng = rng or np.random.default_rng(0)
    if n_b is None:
        total = n_a * (n_a - 1) // 2
        if total == 0:
            return np.zeros((0, 2), dtype=np.int64)
        iu = np.triu_indices(n_a, k=1)
        flat = np.stack(iu, axis=1)
    else:
        total = n_a * n_b
        flat = np.stack(np.unravel_index(np.arange(total), (n_a, n_b)), axis=1)
    if total > max_pairs:
        flat = flat[np.sort(rng.choice(total, size=max_pairs, replace=False))]
    return flat.astype(np.int64)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 rng: np.random.Generator | None = None) -> list[float]:
    """Percentile bootstrap CI of the mean of ``values`` (resampling the pair scores).

    Pairs that share a volume are not independent, so this interval is somewhat too narrow; it is
    for comparing sets evaluated the same way, not an exact coverage statement.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return [float("nan"), float("nan")]
    rng = rng or np.random.default_rng(0)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def pairwise_msssim(a: np.ndarray, b: np.ndarray | None, settings: MSSSIMSettings, max_pairs: int = 1000,
                    seed: int = 0, n_boot: int = 1000) -> dict:
    """Mean pairwise MS-SSIM within ``a`` (b None) or between ``a`` and ``b``; volumes (N, D, H, W).

    Returns ``{"mean", "ci95": [lo, hi], "n_pairs", "values"}`` (values: per-pair scores, float64).
    Within a generated set, a high mean means low diversity (or mode collapse).
    """
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(len(a), None if b is None else len(b), max_pairs, rng)
    if len(pairs) == 0:
        return {"mean": float("nan"), "ci95": [float("nan")] * 2, "n_pairs": 0, "values": np.zeros(0)}
    vals = ms_ssim_pairs(a, b, pairs, settings)
    return {"mean": float(vals.mean()), "ci95": bootstrap_ci(vals, n_boot, rng=rng),
            "n_pairs": int(len(pairs)), "values": vals}
