"""Morphometry: per-subject tissue fractions and brain volume, real vs synthetic, and their age/sex effects.

A generator can match voxel statistics and still get anatomy wrong (too little CSF, a brain that does
not shrink with age). We segment each volume by MD thresholds (no registration, no atlas: MD of adult
white matter ≈ 0.7e-3, grey matter ≈ 0.8-0.9e-3, CSF ≈ 3e-3 mm²/s; Pfefferbaum et al. 2000): brain =
MD > 1e-4 mm²/s (inside ``mask``), WM-like < t1 <= GM-like < t2 <= CSF-like, and compare per-subject
fractions and the brain volume between the sets (1-Wasserstein distance, two-sample Kolmogorov-
Smirnov p-value). Where labels exist, the two effects a clinician checks first: the slope of the CSF
fraction on age (ventricles and sulci widen with age) and the male-female difference in brain volume
(head size), each estimated in the real and in the synthetic set (docs/JUDGE.md).

Everything is computed one volume at a time, so memory stays flat in N.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from neurodit.data.mask import BRAIN_MIN_MM2S  # one cut-off for "brain" (the data layer owns it)
from neurodit.errors import NeuroditError

__all__ = ["tissue_fractions", "morphometry_metrics", "MEASURES", "TISSUE_THRESHOLDS_MM2S", "BRAIN_MIN_MM2S"]

# WM-like < 0.8e-3 <= GM-like < 1.5e-3 <= CSF-like (mm²/s); the same split as evaluate's tissue histograms
TISSUE_THRESHOLDS_MM2S = (0.8e-3, 1.5e-3)
MEASURES = ("wm_fraction", "gm_fraction", "csf_fraction", "brain_volume_ml")
_LABELS = {"wm_fraction": "WM-like fraction", "gm_fraction": "GM-like fraction",
           "csf_fraction": "CSF-like fraction", "brain_volume_ml": "brain volume"}


def tissue_fractions(volumes_mm2s: np.ndarray, mask: np.ndarray | None, voxel_volume_ml: float,
                     thresholds: tuple[float, float] = TISSUE_THRESHOLDS_MM2S) -> dict[str, np.ndarray]:
    """Per-subject tissue make-up of (N, D, H, W) MD maps in mm²/s -> dict of (N,) float64 arrays.

    ``wm_fraction`` / ``gm_fraction`` / ``csf_fraction``: share of the brain voxels (MD > 1e-4 mm²/s,
    inside ``mask`` if given) with MD < t1, t1 <= MD < t2, MD >= t2 (they sum to 1);
    ``brain_volume_ml``: brain voxels x ``voxel_volume_ml`` (1 ml = 1000 mm³).
    """
    t1, t2 = thresholds
    if not (BRAIN_MIN_MM2S < t1 < t2):
        raise NeuroditError(f"tissue thresholds must satisfy {BRAIN_MIN_MM2S} < t1 < t2, got {thresholds}")
    if voxel_volume_ml <= 0:
        raise NeuroditError(f"voxel volume must be > 0 ml, got {voxel_volume_ml}")
    if np.ndim(volumes_mm2s) != 4:
        raise NeuroditError(f"tissue fractions need (N, D, H, W) volumes, got shape {np.shape(volumes_mm2s)}")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if m is not None and m.shape != tuple(np.shape(volumes_mm2s)[1:]):
        raise NeuroditError(f"mask shape {m.shape} differs from the volumes' {tuple(np.shape(volumes_mm2s)[1:])}")
    n = len(volumes_mm2s)
    counts = np.zeros((n, 4))  # brain, wm, gm, csf voxels
    for i in range(n):
        v = np.asarray(volumes_mm2s[i], dtype=np.float64)  # (D, H, W): one at a time (memmaps stay on disk)
        v = v[m] if m is not None else v.ravel()
        brain = v > BRAIN_MIN_MM2S
        counts[i] = (brain.sum(), (brain & (v < t1)).sum(), ((v >= t1) & (v < t2)).sum(), (v >= t2).sum())
    if np.any(counts[:, 0] == 0):
        raise NeuroditError(f"volume {int(np.argmax(counts[:, 0] == 0))} has no brain voxel "
                            f"(MD > {BRAIN_MIN_MM2S} mm²/s)")
    brain = counts[:, 0]
    return {"wm_fraction": counts[:, 1] / brain, "gm_fraction": counts[:, 2] / brain,
            "csf_fraction": counts[:, 3] / brain, "brain_volume_ml": brain * float(voxel_volume_ml)}


def _ols_slope(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Least-squares slope of y on x with a 95% t-interval; None with < 3 points or no spread in x."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    res = stats.linregress(x, y)
    half = float(stats.t.ppf(0.975, len(x) - 2) * res.stderr)
    return {"slope": float(res.slope), "ci95": [float(res.slope - half), float(res.slope + half)],
            "r": float(res.rvalue), "p_value": float(res.pvalue), "n": int(len(x))}


def _group_diff(values: np.ndarray, sex: np.ndarray) -> dict[str, Any] | None:
    """Mean(M) - mean(F) with a Welch 95% interval; None with < 2 per group."""
    m, f = values[sex == "M"], values[sex == "F"]
    if len(m) < 2 or len(f) < 2:
        return None
    diff = float(m.mean() - f.mean())
    vm, vf = m.var(ddof=1) / len(m), f.var(ddof=1) / len(f)
    se = float(np.sqrt(vm + vf))
    dof = (vm + vf) ** 2 / max(vm ** 2 / (len(m) - 1) + vf ** 2 / (len(f) - 1), 1e-300)
    half = float(stats.t.ppf(0.975, dof) * se) if se > 0 else 0.0
    return {"diff": diff, "ci95": [diff - half, diff + half], "n_m": int(len(m)), "n_f": int(len(f))}


def _column(table: Any, name: str, n: int, what: str) -> np.ndarray | None:
    if table is None or name not in table:
        return None
    if len(table) != n:
        raise NeuroditError(f"{what} table has {len(table)} rows for {n} volumes")
    col = table[name]
    if name == "age":
        a = np.asarray(col, dtype=np.float64)
        return a if np.isfinite(a).sum() >= 3 else None
    s = col.astype(object).to_numpy()
    return s if {"F", "M"} <= set(s.tolist()) else None


def _effect(real: dict | None, syn: dict | None, key: str, unit: str, scale: float = 1.0) -> dict[str, Any]:
    def val(d):
        return None if d is None else d[key] * scale

    def ci(d):
        return None if d is None else [c * scale for c in d["ci95"]]

    return {"real": val(real), "synthetic": val(syn), "real_ci95": ci(real), "synthetic_ci95": ci(syn),
            "unit": unit}


def _verdict(measures: dict[str, dict], effects: dict[str, dict]) -> str:
    # the largest gap in units of the real spread (Wasserstein / real sd), and any significant KS difference
    gaps = {k: m["wasserstein"] / m["real_sd"] if m["real_sd"] > 0 else (0.0 if m["wasserstein"] == 0 else np.inf)
            for k, m in measures.items()}
    differ = [k for k, m in measures.items() if m["ks_p"] < 0.05]
    worst = max(differ or gaps, key=lambda k: gaps[k])
    if differ:
        names = ", ".join(_LABELS[k] for k in differ)
        d = measures[worst]
        direction = "higher" if d["syn_mean"] > d["real_mean"] else "lower"
        size = (f"by {gaps[worst]:.1f} real standard deviations" if np.isfinite(gaps[worst])
                else "while the real values do not vary at all")
        head = (f"Synthetic brains differ from real ones in {names} (KS p < 0.05); the largest gap is the "
                f"{_LABELS[worst]}, {direction} {size}")
    else:
        head = (f"Tissue fractions and brain volume of the synthetic brains are distributed like the real "
                f"ones (largest gap: {_LABELS[worst]}, {gaps[worst]:.1f} real SDs)")
    age = effects["csf_fraction_age_slope"]
    if age["real"] is not None and age["synthetic"] is not None and age["real_ci95"][0] > 0:
        ratio = age["synthetic"] / age["real"]
        head += (f"; CSF increases with age {ratio:.0%} as fast as in real brains" if ratio > 0
                 else "; the synthetic CSF does not increase with age as in real brains")
    elif age["real"] is not None and age["synthetic"] is None:
        head += "; the age effect cannot be checked (no synthetic ages)"
    return head + "."


def morphometry_metrics(real_mm2s: np.ndarray, syn_mm2s: np.ndarray, mask: np.ndarray | None,
                        voxel_volume_ml: float, real_table: Any = None, syn_table: Any = None,
                        thresholds: tuple[float, float] = TISSUE_THRESHOLDS_MM2S) -> dict[str, Any]:
    """Real vs synthetic tissue fractions and brain volume, with their age and sex effects.

    ``real_table`` / ``syn_table``: cohort tables (rows aligned with the volumes) with ``sex`` (F/M) and
    ``age`` (years, NaN if missing), or None. Returns (JSON-ready)::

        measures  {wm_fraction | gm_fraction | csf_fraction | brain_volume_ml:
                   {real_mean, real_sd, syn_mean, syn_sd, wasserstein, ks_p}}   (sd with ddof 1;
                   Wasserstein = 1-Wasserstein distance of the per-subject values, in the measure's unit)
        effects   {csf_fraction_age_slope: {real, synthetic, real_ci95, synthetic_ci95, unit "per decade"},
                   brain_volume_sex_diff_ml: {real, synthetic, real_ci95, synthetic_ci95, unit "ml (M - F)"}}
                   (null where a set lacks ages / both sexes)
        thresholds_mm2s [t1, t2], voxel_volume_ml, n_real, n_synthetic, verdict (one sentence)
    """
    if len(real_mm2s) < 2 or len(syn_mm2s) < 2:
        raise NeuroditError(f"morphometry needs >= 2 volumes per set, got {len(real_mm2s)} real and "
                            f"{len(syn_mm2s)} synthetic")
    fr = tissue_fractions(real_mm2s, mask, voxel_volume_ml, thresholds)
    fs = tissue_fractions(syn_mm2s, mask, voxel_volume_ml, thresholds)
    measures = {}
    for k in MEASURES:
        a, b = fr[k], fs[k]
        measures[k] = {"real_mean": float(a.mean()), "real_sd": float(a.std(ddof=1)),
                       "syn_mean": float(b.mean()), "syn_sd": float(b.std(ddof=1)),
                       "wasserstein": float(stats.wasserstein_distance(a, b)),
                       "ks_p": float(stats.ks_2samp(a, b).pvalue)}
    slopes, diffs = [], []
    for f, table, what in ((fr, real_table, "real"), (fs, syn_table, "synthetic")):
        n = len(f["csf_fraction"])
        age, sex = _column(table, "age", n, what), _column(table, "sex", n, what)
        slopes.append(None if age is None else _ols_slope(age, f["csf_fraction"]))
        diffs.append(None if sex is None else _group_diff(f["brain_volume_ml"], sex))
    effects = {"csf_fraction_age_slope": _effect(*slopes, "slope", "per decade", scale=10.0),
               "brain_volume_sex_diff_ml": _effect(*diffs, "diff", "ml (M - F)")}
    out = {"measures": measures, "effects": effects, "thresholds_mm2s": [float(t) for t in thresholds],
           "voxel_volume_ml": float(voxel_volume_ml), "n_real": int(len(real_mm2s)),
           "n_synthetic": int(len(syn_mm2s))}
    out["verdict"] = _verdict(measures, effects)
    return out
