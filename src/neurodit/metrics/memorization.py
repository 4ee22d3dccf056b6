"""Memorization audit: is a synthetic volume closer to a training volume than real subjects ever are?

For each synthetic volume we find its nearest training volume by Pearson correlation of the in-mask
voxels, and compare that distribution with the same quantity for real held-out subjects (who were
never trained on). A generator that copies training data puts synthetic volumes above the held-out
99th percentile far more often than the 1 % expected by chance (cf. Carlini et al. 2023, "Extracting
training data from diffusion models"; Akbar et al. 2023, "Beware of diffusion models for synthesizing
medical images" for the nearest-neighbour correlation audit on brain MRI).

Without a training set the reference set is the real set itself, and the held-out distribution is
each real subject's nearest *other* real subject (leave-one-out).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _standardize(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, D, H, W) -> (N, V) in-mask voxels with zero mean and unit norm (rows), float64."""
    x = np.asarray(v, dtype=np.float64)[:, mask]
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def correlation_matrix(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson correlation of every volume of ``a`` (N, D, H, W) with every one of ``b`` -> (N, M)."""
    from neurodit.metrics.volumes import chunks, is_lazy

    mask = np.asarray(mask, dtype=bool)
    sb = _standardize(b, mask)
    if is_lazy(a):  # on-disk set: a few volumes at a time, so memory does not grow with N
        return np.concatenate([_standardize(c, mask) @ sb.T for _, c in chunks(a)])
    return _standardize(a, mask) @ sb.T


def memorization_audit(synthetic: np.ndarray, reference: np.ndarray, heldout: np.ndarray | None,
                       mask: np.ndarray, percentile: float = 99.0, n_closest: int = 4,
                       duplicate_r: float = 0.999) -> dict:
    """Nearest-reference correlation of synthetic vs held-out real volumes (all (N, D, H, W)).

    ``reference`` is the training set; ``heldout`` the real held-out subjects, or None for the
    leave-one-out variant (held-out = reference, each subject's nearest other subject).
    Returns (JSON-ready apart from the arrays under ``"_arrays"``):
    ``threshold`` (held-out ``percentile``-th percentile of nearest-r), ``fraction_above`` (of synthetic),
    ``expected_fraction`` (1 - percentile/100), ``binom_p`` (one-sided binomial test of the count above
    against the expected fraction), ``flagged`` (binom_p < 0.01), ``n_duplicates`` (nearest r >=
    ``duplicate_r``), ``syn_nn`` / ``heldout_nn`` summaries, ``closest`` (the ``n_closest`` synthetic
    volumes with the highest nearest-r: indices and r).
    """
    mask = np.asarray(mask, dtype=bool)
    r_syn = correlation_matrix(synthetic, reference, mask)  # (S, T)
    if heldout is None:
        r_ho = correlation_matrix(reference, reference, mask)
        np.fill_diagonal(r_ho, -np.inf)  # leave one out: a subject is not its own neighbour
    else:
        r_ho = correlation_matrix(heldout, reference, mask)
    syn_nn, syn_arg = r_syn.max(axis=1), r_syn.argmax(axis=1)
    ho_nn = r_ho.max(axis=1)
    thr = float(np.percentile(ho_nn, percentile))
    n_above = int((syn_nn > thr).sum())
    expected = 1.0 - percentile / 100.0
    binom_p = float(stats.binomtest(n_above, len(syn_nn), expected, alternative="greater").pvalue)
    order = np.argsort(-syn_nn)[:n_closest]

    def summary(x: np.ndarray) -> dict:
        return {"mean": float(x.mean()), "median": float(np.median(x)), "min": float(x.min()),
                "max": float(x.max()), "n": int(x.size)}

    return {
        "similarity": "pearson_r_in_mask",
        "heldout": "leave_one_out_reference" if heldout is None else "given",
        "percentile": percentile,
        "threshold": thr,
        "n_above": n_above,
        "fraction_above": n_above / len(syn_nn),
        "expected_fraction": expected,
        "binom_p": binom_p,
        "flagged": bool(binom_p < 0.01),
        "n_duplicates": int((syn_nn >= duplicate_r).sum()),
        "duplicate_r": duplicate_r,
        "syn_nn": summary(syn_nn),
        "heldout_nn": summary(ho_nn),
        "closest": [{"synthetic": int(i), "reference": int(syn_arg[i]), "r": float(syn_nn[i])} for i in order],
        "_arrays": {"syn_nn": syn_nn, "heldout_nn": ho_nn},
    }
