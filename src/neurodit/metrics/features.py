"""Feature-space metrics: Fréchet distance and precision / recall / density / coverage of a fixed 3D encoder.

Image-generation papers judge samples in the feature space of a fixed network (FID: Heusel et al. 2017,
"GANs trained by a two time-scale update rule converge to a local Nash equilibrium"; improved precision
and recall: Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing generative
models"; density and coverage: Naeem et al. 2020, "Reliable fidelity and diversity metrics for
generative models"). The encoder (the project's own, trained on the real training volumes, or a
user's) is :mod:`neurodit.metrics.encoder`.

Distances are in the encoder's feature units: compare numbers only under one encoder (its sha256 is in
every result).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError
from neurodit.metrics.encoder import Encoder, get_encoder

# get_encoder: re-exported for neurodit.metrics.evaluate until it imports neurodit.metrics.encoder itself
__all__ = ["Encoder", "get_encoder", "frechet_distance", "prdc", "feature_metrics"]


# --------------------------------------------------------------------------- metrics
def _as_features(x: np.ndarray, what: str, min_n: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < min_n:
        raise NeuroditError(f"{what} features must be (N, F) with N >= {min_n}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise NeuroditError(f"{what} features contain non-finite values")
    return x


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F) (the FID formula,
    Heusel et al. 2017): ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``.

    Numerically safe: ``Tr (S_a S_b)^{1/2} = Tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}`` (similar matrices), and the
    latter is symmetric PSD, so both roots come from ``scipy.linalg.eigh`` with negative round-off
    eigenvalues clipped (no complex parts as ``sqrtm`` of a singular product gives when N < F). A set
    against itself gives 0 up to float rounding; the result is clipped at 0. Covariances with ddof 1.
    """
    a, b = _as_features(feat_a, "first"), _as_features(feat_b, "second")
    if a.shape[1] != b.shape[1]:
        raise NeuroditError(f"feature sets have different widths: {a.shape[1]} vs {b.shape[1]}")
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    sa, sb = np.atleast_2d(sa), np.atleast_2d(sb)
    ra = _psd_sqrt(sa)
    mid = ra @ sb @ ra
    w = linalg.eigvalsh((mid + mid.T) / 2)
    tr_cross = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    d = float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * tr_cross)
    # round-off floor: identical sets give ~1e-15 relative to the traces
    return max(d, 0.0) if abs(d) > 1e-12 * max(1.0, float(np.trace(sa) + np.trace(sb))) else 0.0


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M), exact 0 for identical rows (float64)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row of x (N, F) to its k-th nearest *other* row -> (N,)."""
    d = _pairwise(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def prdc(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020) with k-NN balls.

    Each real point gets a ball of radius its distance to its k-th nearest other real point (likewise
    for fake points). precision = fraction of fake points inside some real ball (realism); recall =
    fraction of real points inside some fake ball (diversity); density = mean number of real balls
    holding a fake point, / k (about 1 when alike, > 1 when fakes crowd dense real regions); coverage
    = fraction of real balls holding at least one fake point. Identical sets give precision = recall =
    coverage = 1. ``k`` must be < both set sizes. A set of identical fakes has zero-radius balls: recall 0.
    """
    real, fake = _as_features(real_feats, "real"), _as_features(fake_feats, "synthetic")
    if real.shape[1] != fake.shape[1]:
        raise NeuroditError(f"feature sets have different widths: {real.shape[1]} vs {fake.shape[1]}")
    if not 1 <= k < min(len(real), len(fake)):
        raise NeuroditError(f"PRDC needs 1 <= k < both set sizes, got k={k} with {len(real)} real and "
                            f"{len(fake)} synthetic samples")
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    d = _pairwise(real, fake)  # (N_real, N_fake)
    # <= : an exact copy of a real point (distance 0) lies in its ball even if that ball has radius 0
    inside_real = d <= r_real[:, None]  # (N_real, N_fake): fake j in real ball i
    return {"precision": float(inside_real.any(0).mean()),
            "recall": float((d <= r_fake[None, :]).any(1).mean()),
            "density": float(inside_real.sum(0).mean() / k),
            "coverage": float((d.min(1) <= r_real).mean())}


def _verdict(precision: float, recall: float, frechet: float, floor: float | None) -> str:
    p, r = f"{precision:.0%}", f"{recall:.0%}"
    head = (f"To a 3D network trained on the real training brains, {p} of the synthetic brains look like "
            f"plausible real ones and they cover {r} of the real variety")
    if precision >= 0.7 and recall >= 0.7:
        tail = "close to real"
    elif precision >= 0.7:
        tail = "realistic but too little variety (too similar to each other or to a few real brains)"
    elif recall >= 0.7:
        tail = "varied, but many look unlike any real brain"
    else:
        tail = "many look unlike real brains and much of the real variety is missing"
    if floor is not None and floor > 0:
        tail += f"; Fréchet distance {frechet:.3g}, {frechet / floor:.1f}x that between two real sets"
    return f"{head}: {tail}."


def feature_metrics(real_mm2s: np.ndarray, syn_mm2s: np.ndarray, encoder: Encoder, *, k: int = 5,
                    reference_mm2s: np.ndarray | None = None, norm: Normalization = Normalization(),
                    batch_size: int = 8) -> dict[str, Any]:
    """Fréchet distance and PRDC of synthetic vs real (N, D, H, W) volumes in mm²/s, in ``encoder``'s features.

    ``reference_mm2s`` (optional, e.g. the training set): a second real set giving the floor, the same
    numbers for real reference vs real (``floor``), so a reader sees what "as good as real" means here.
    Returns ``{encoder: info, dim, n_real, n_synthetic, k, frechet, precision, recall, density, coverage,
    floor (or None), warnings: [str], verdict: str}``. ``k`` is lowered to N - 1 for tiny sets (warned).
    """
    f_real = encoder.features(real_mm2s, norm=norm, batch_size=batch_size)
    f_syn = encoder.features(syn_mm2s, norm=norm, batch_size=batch_size)
    dim = int(f_real.shape[1])
    warnings: list[str] = []
    for what, f in (("real", f_real), ("synthetic", f_syn)):
        if len(f) < dim:
            warnings.append(f"only {len(f)} {what} volumes for {dim} features: the covariance is rank "
                            f"deficient, the Fréchet distance is biased upwards (compare only equal sizes)")
    sets = [f_real, f_syn]
    f_ref = None
    if reference_mm2s is not None:
        f_ref = encoder.features(reference_mm2s, norm=norm, batch_size=batch_size)
        sets.append(f_ref)
    k_used = min(k, min(len(f) for f in sets) - 1)
    if k_used < 1:
        raise NeuroditError("feature metrics need at least 2 volumes in every set")
    if k_used != k:
        warnings.append(f"k lowered from {k} to {k_used}: a set has only {k_used + 1} volumes")
    fd = frechet_distance(f_real, f_syn)
    out: dict[str, Any] = {"encoder": encoder.info, "dim": dim, "n_real": int(len(f_real)),
                           "n_synthetic": int(len(f_syn)), "k": int(k_used), "frechet": fd,
                           **prdc(f_real, f_syn, k=k_used), "floor": None}
    if f_ref is not None:
        out["floor"] = {"sets": "real reference (e.g. training) vs real", "n_reference": int(len(f_ref)),
                        "frechet": frechet_distance(f_real, f_ref), **prdc(f_real, f_ref, k=k_used)}
    out["warnings"] = warnings
    out["verdict"] = _verdict(out["precision"], out["recall"], fd,
                              None if out["floor"] is None else out["floor"]["frechet"])
    return out
