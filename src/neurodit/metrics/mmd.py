"""Maximum mean discrepancy (MMD) between two sets of volumes, with a permutation test.

Gretton et al. 2012, "A kernel two-sample test" (JMLR 13:723-773), unbiased estimator (Lemma 6):

    MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)

Two kernels:
- linear, k(x, y) = <x, y>: exactly what MONAI's ``MMDMetric`` (and the MONAI tutorials, and the
  paper's numbers) compute. In expectation it equals ||E[x] - E[y]||^2: it sees differences of the
  mean image only, never a change in spread, and it can be negative.
- Gaussian RBF, k(x, y) = exp(-||x - y||^2 / (2 s^2)) with s = median pairwise distance of the pooled
  sample (median heuristic, Gretton et al. 2012 sec. 8): characteristic, so MMD = 0 iff the two
  distributions are equal; it detects a change in spread at the same mean.

p-values come from a permutation test (the labels of the pooled sample shuffled ``permutations``
times; p = (1 + #{MMD_perm >= MMD_obs}) / (1 + permutations)).
Inputs are feature matrices (N, F): flattened in-mask voxels in model range, or features of a fixed
encoder (see :func:`volume_features`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from neurodit.errors import NeuroditError


def _as_matrix(x: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float64)
    x = x.reshape(x.shape[0], -1)  # (N, ...) -> (N, F)
    if x.shape[0] < 2:
        raise NeuroditError(f"MMD needs at least 2 samples in the {what} set, got {x.shape[0]}")
    return x


def _unbiased_from_kernel(k: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 for each row of ``labels`` (P, N) (1 = first set) from the pooled kernel (N, N)."""
    a = labels.to(k.dtype)  # (P, N)
    b = 1.0 - a
    k0 = k - torch.diag(torch.diagonal(k))  # zero diagonal: the i != j sums
    m = a.sum(1)
    n = b.sum(1)
    ka, kb = a @ k0, b @ k0  # (P, N)
    sxx = (ka * a).sum(1)
    syy = (kb * b).sum(1)
    sxy = (a @ k * b).sum(1)
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def median_bandwidth(d2: torch.Tensor) -> float:
    """Median heuristic: median of the off-diagonal pairwise distances sqrt(d2) of the pooled sample."""
    n = d2.shape[0]
    off = d2[~torch.eye(n, dtype=torch.bool)]
    med = float(torch.sqrt(torch.clamp(off.median(), min=0.0)))
    return med if med > 0 else 1.0  # all samples identical: any bandwidth gives MMD 0


def mmd_test(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, kernel: str = "rbf",
             permutations: int = 500, seed: int = 0, bandwidth: float | None = None) -> dict:
    """Unbiased MMD^2 between samples x (m, ...) and y (n, ...) with a permutation p-value.

    kernel: "rbf" (median-heuristic bandwidth unless given) or "linear" (MONAI MMDMetric's estimator).
    Returns ``{"mmd2", "p_value", "bandwidth" (rbf only), "kernel", "n_x", "n_y", "permutations"}``.
    Symmetric in x and y.
    """
    x, y = _as_matrix(x, "first"), _as_matrix(y, "second")
    if x.shape[1] != y.shape[1]:
        raise NeuroditError(f"MMD sets have different feature sizes: {x.shape[1]} vs {y.shape[1]}")
    z = torch.cat([x, y])  # (N, F), N = m + n
    return mmd_from_gram(z @ z.T, int(x.shape[0]), kernel, permutations, seed, bandwidth)


def mmd_from_gram(gram: torch.Tensor, m: int, kernel: str = "rbf", permutations: int = 500, seed: int = 0,
                  bandwidth: float | None = None) -> dict:
    """:func:`mmd_test` from the pooled Gram matrix (N, N) float64 of inner products <z_i, z_j>, the first
    ``m`` rows being the first set: both kernels need nothing else, so a caller can accumulate the Gram
    matrix over chunks of volumes instead of holding (N, F) features."""
    gram = torch.as_tensor(gram, dtype=torch.float64)
    if m < 2 or gram.shape[0] - m < 2:
        raise NeuroditError(f"MMD needs at least 2 samples per set, got {m} and {gram.shape[0] - m}")
    out: dict = {"kernel": kernel, "n_x": int(m), "n_y": int(gram.shape[0] - m)}
    if kernel == "linear":
        k = gram
    elif kernel == "rbf":
        sq = torch.diagonal(gram)
        d2 = torch.clamp(sq[:, None] + sq[None, :] - 2 * gram, min=0.0)  # (N, N) squared distances
        s = float(bandwidth) if bandwidth else median_bandwidth(d2)
        k = torch.exp(-d2 / (2 * s * s))
        out["bandwidth"] = s
    else:
        raise NeuroditError(f"unknown MMD kernel '{kernel}' (use rbf or linear)")
    big_n = gram.shape[0]
    obs_labels = torch.zeros(1, big_n)
    obs_labels[0, :m] = 1
    obs = float(_unbiased_from_kernel(k, obs_labels)[0])
    out["mmd2"] = obs
    if permutations > 0:
        g = torch.Generator().manual_seed(seed)
        perm = torch.argsort(torch.rand(permutations, big_n, generator=g), dim=1)
        labels = (perm < m).to(torch.float64)  # each row: a random relabelling with m ones
        null = _unbiased_from_kernel(k, labels)
        # tolerance: relabellings equal to the observed split give the same value up to rounding
        out["p_value"] = float((1 + (null >= obs - 1e-12 * max(1.0, abs(obs))).sum()) / (1 + permutations))
    else:
        out["p_value"] = None
    out["permutations"] = int(permutations)
    return out


def monai_linear_mmd(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """MONAI ``MMDMetric()(x, y)`` (linear kernel); x, y: (B, ...) with the same B >= 2."""
    from monai.metrics import MMDMetric

    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.float64)
    return float(MMDMetric()(x.reshape(x.shape[0], 1, -1), y.reshape(y.shape[0], 1, -1)))


def volume_features(volumes: np.ndarray, mask: np.ndarray | None = None,
                    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Feature matrix (N, F) for MMD: in-mask voxels of (N, D, H, W) volumes, or ``encoder`` outputs.

    ``encoder`` is a fixed (frozen, eval-mode) network taking (B, 1, D, H, W) float32 -> (B, F).
    """
    if encoder is not None:  # 16 volumes at a time (on-disk sets are read lazily)
        with torch.no_grad():
            feats = []
            for i in range(0, len(volumes), 16):
                vb = np.ascontiguousarray(volumes[i:i + 16], dtype=np.float32)
                feats.append(encoder(torch.from_numpy(vb)[:, None]).reshape(len(vb), -1))
        return torch.cat(feats).double().numpy()
    v = np.asarray(volumes, dtype=np.float32)
    if mask is not None:
        return v[:, np.asarray(mask, dtype=bool)]  # (N, n_mask_voxels)
    return v.reshape(len(v), -1)
