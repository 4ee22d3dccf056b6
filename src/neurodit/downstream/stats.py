"""Classification metrics, summaries with confidence intervals, and paired comparisons of arms.

- :func:`classification_metrics`: balanced accuracy, F1 (positive class), ROC-AUC, accuracy (sklearn),
  with the decision threshold at probability 0.5.
- :func:`summarize`: mean, sd (ddof=1) and a 95% Student-t CI of the mean over the fold x seed runs.
- :func:`paired_comparison`: the paired differences ``arm - baseline`` over identical fold x seed runs,
  with (a) a percentile bootstrap 95% CI of the mean difference and a two-sided bootstrap p-value,
  (b) the Wilcoxon signed-rank test (scipy), and (c) the Nadeau & Bengio (2003, "Inference for the
  generalization error") corrected resampled t-test, which widens the variance by
  ``n_test/n_train`` because cross-validation folds share training data. Runs are not independent
  (folds overlap), so (a) and (b) are optimistic; (c) is the conservative one.
- :func:`verdict`: a plain-words sentence; "helped"/"hurt" only when the bootstrap CI excludes 0 and
  the Wilcoxon p < 0.05.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from neurodit.formatting import signed

METRICS = ("balanced_accuracy", "f1", "roc_auc", "accuracy")
PRETTY = {"balanced_accuracy": "balanced accuracy", "f1": "F1", "roc_auc": "ROC-AUC", "accuracy": "accuracy"}


def classification_metrics(y_true: np.ndarray, p_pos: np.ndarray) -> dict[str, float]:
    """Metrics of positive-class probabilities ``p_pos`` (N,) against labels ``y_true`` (N,) in {0, 1}."""
    y_true = np.asarray(y_true, dtype=int)
    p_pos = np.asarray(p_pos, dtype=float)
    y_pred = (p_pos >= 0.5).astype(int)
    auc = roc_auc_score(y_true, p_pos) if len(np.unique(y_true)) == 2 else float("nan")
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0.0)),
        "roc_auc": float(auc),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def summarize(values: np.ndarray) -> dict[str, object]:
    """Mean, sd and 95% t-interval of the mean of ``values`` (one per fold x seed run)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "n": n,
            "values": [float(x) for x in v]}


def paired_comparison(arm: np.ndarray, baseline: np.ndarray, *, n_boot: int = 10000, seed: int = 0,
                      test_train_ratio: float | None = None) -> dict[str, object]:
    """Compare ``arm`` with ``baseline``, paired run by run (same fold, same seed, same test subjects).

    Args:
        arm, baseline: (R,) metric values of R paired runs.
        n_boot: bootstrap resamples of the R paired differences.
        test_train_ratio: n_test / n_train of the folds, for the Nadeau-Bengio corrected t-test
            (None: skip it).
    Returns:
        ``{"mean_diff", "sd_diff", "ci95" (bootstrap percentile), "p_bootstrap", "p_wilcoxon",
        "p_corrected_t", "n_pairs", "wins", "losses", "ties"}``; p-values are two-sided, NaN when the
        test is undefined (fewer than 2 pairs or all differences zero).
    """
    a = np.asarray(arm, dtype=float)
    b = np.asarray(baseline, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = len(d)
    out: dict[str, object] = {"n_pairs": n, "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
                              "ties": int((d == 0).sum())}
    if n == 0:
        out.update(mean_diff=float("nan"), sd_diff=float("nan"), ci95=[float("nan")] * 2,
                   p_bootstrap=float("nan"), p_wilcoxon=float("nan"), p_corrected_t=float("nan"))
        return out
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # (n_boot,) resampled mean differences
    lo, hi = np.percentile(boot, [2.5, 97.5])
    # two-sided bootstrap p: how often the resampled mean lands on the other side of zero
    p_boot = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean()))) if n > 1 else float("nan")
    if n > 1 and np.any(d != 0):
        p_wil = float(sps.wilcoxon(d, zero_method="zsplit").pvalue)
    else:
        p_wil = float("nan")
    p_nb = float("nan")
    if test_train_ratio is not None and n > 1 and sd > 0:
        t = mean / math.sqrt((1.0 / n + test_train_ratio) * sd**2)
        p_nb = float(2 * sps.t.sf(abs(t), n - 1))
    out.update(mean_diff=mean, sd_diff=sd, ci95=[float(lo), float(hi)], p_bootstrap=p_boot,
               p_wilcoxon=p_wil, p_corrected_t=p_nb)
    return out


def verdict(comparison: dict[str, object], *, subject: str, metric: str = "balanced_accuracy",
            alpha: float = 0.05) -> tuple[str, str]:
    """Plain-words verdict of a paired comparison.

    "helped" / "hurt" need both the bootstrap 95% CI of the mean difference to exclude 0 and the
    Wilcoxon signed-rank p < ``alpha`` (with few paired runs the percentile bootstrap is too narrow to
    decide alone); otherwise "no clear effect". ``subject`` names what is tested, e.g. "synthetic data".
    Returns (outcome, sentence), e.g. ("no clear effect", "synthetic data did not clearly help or hurt:
    +0.010 balanced accuracy, 95% CI -0.030 to +0.050 (6 paired fold×seed runs, Wilcoxon p=0.56,
    corrected t p=0.71)").
    """
    m = float(comparison["mean_diff"])
    lo, hi = (float(x) for x in comparison["ci95"])
    if not math.isfinite(m):
        return "no clear effect", f"{subject}: no paired runs to compare"
    p = comparison.get("p_wilcoxon")
    p_ok = isinstance(p, float) and math.isfinite(p) and p < alpha
    if lo > 0 and p_ok:
        outcome, head = "helped", f"{subject} helped"
    elif hi < 0 and p_ok:
        outcome, head = "hurt", f"{subject} hurt"
    elif lo > 0 or hi < 0:
        outcome = "no clear effect"
        head = (f"{subject} did not clearly {'help' if lo > 0 else 'hurt'} (bootstrap CI excludes 0, "
                f"Wilcoxon p >= {alpha:g})")
    else:
        outcome, head = "no clear effect", f"{subject} did not clearly help or hurt"
    parts = [f"{comparison['n_pairs']} paired fold\u00d7seed runs"]
    for key, name in (("p_wilcoxon", "Wilcoxon"), ("p_corrected_t", "corrected t")):
        v = comparison.get(key)
        if isinstance(v, float) and math.isfinite(v):
            parts.append(f"{name} p={v:.2g}")
    sentence = (f"{head}: {signed(m, 3)} {PRETTY.get(metric, metric)}, 95% CI {signed(lo, 3)} to {signed(hi, 3)} "
                f"({', '.join(parts)})")
    return outcome, sentence
