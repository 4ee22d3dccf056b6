"""The judge's verdicts: one plain-words sentence per metric family, and the headline numbers.

Wording only: each function reads a family's numbers (the metrics.json schema of
:mod:`neurodit.metrics.evaluate`) and says what they mean; the numbers are computed in
:mod:`neurodit.metrics.families`. ``collect_verdicts`` gathers the sentences in :data:`FAMILIES` order;
``headline`` is one evaluation's row of the calibration panel (:mod:`neurodit.metrics.calibration`).
"""

from __future__ import annotations

import numpy as np

# Each family is a JSON-able dict with a "verdict" sentence; collect_verdicts gathers them in this order
# (the C2ST first: it is the strongest single signal). A new family (e.g. features, morphometry) is one
# function on arrays returning such a dict, stored under its name in metrics.json and listed here.
FAMILIES = ("c2st", "diversity", "memorization", "msssim", "mmd", "features", "morphometry")
FAMILY_NAMES = {"msssim": "fidelity"}  # key in metrics["verdicts"] when it differs from the section name


def collect_verdicts(metrics: dict) -> dict[str, str]:
    """``{family: verdict}`` of every family in ``metrics`` that carries one, in :data:`FAMILIES` order."""
    return {FAMILY_NAMES.get(f, f): metrics[f]["verdict"] for f in FAMILIES
            if isinstance(metrics.get(f), dict) and "verdict" in metrics[f]}


def c2st_with_audit(c2st_out: dict, mem: dict) -> str:
    """The C2ST verdict, warning that a copy fools the classifier when the memorization audit flags one."""
    verdict = c2st_out["verdict"]
    told_apart = any(r["p_value"] < 0.05 for r in c2st_out["views"].values())
    if mem.get("flagged") and not told_apart:
        verdict += ("; but the memorization audit flags copies of training subjects: a copy of a real "
                    "subject fools any classifier, only the audit catches it")
    return verdict


def diversity_family(ms: dict, msssim: dict) -> dict:
    """Diversity from MS-SSIM between synthetic pairs vs between real pairs (``ms``: pairwise_msssim
    results with their ``values``)."""
    ss, rr = msssim["syn_syn"]["mean"], msssim["real_real"]["mean"]
    vals = np.asarray(ms["syn_syn"]["values"])
    identical = float((vals > 0.9999).mean()) if vals.size else float("nan")
    above = msssim["syn_syn_above_real_max"]
    zero = bool(identical >= 0.25 or above >= 0.9)
    low = bool(zero or above >= 0.25 or ss - rr > 0.5 * (1.0 - rr))
    nums = f"MS-SSIM between synthetic pairs {ss:.3f} vs {rr:.3f} between real pairs"
    if zero:
        verdict = (f"synthetic volumes are (near-)copies of each other ({nums}; {identical:.0%} of pairs identical, "
                   f"{above:.0%} more alike than the most alike real pair): flagged as zero diversity")
    elif low:
        verdict = (f"synthetic volumes are less varied than real subjects ({nums}; {above:.0%} of pairs more "
                   "alike than the most alike real pair): low diversity")
    else:
        verdict = f"synthetic volumes vary about as much as real subjects ({nums})"
    return {"syn_syn": ss, "real_real": rr, "syn_syn_above_real_max": above, "identical_pairs": identical,
            "zero_diversity": zero, "low_diversity": low, "verdict": verdict}


def fidelity_verdict(msssim: dict) -> str:
    rs, rr = msssim["real_syn"]["mean"], msssim["real_real"]["mean"]
    nums = f"MS-SSIM real-synthetic {rs:.3f} vs real-real {rr:.3f}"
    if rs < rr - 0.02:
        return f"synthetic volumes look structurally less like real subjects than real subjects do ({nums})"
    return f"synthetic volumes are structurally as close to real subjects as real subjects are to each other ({nums})"


def mmd_verdict(mmd: dict) -> str:
    r = mmd["rbf"]["real_syn"]
    f = mmd["rbf"]["floor"]
    nums = f"RBF MMD² {r['mmd2']:.3g}, p {r['p_value']:.2g}; real-vs-real floor {f['mmd2']:.3g}"
    if r["p_value"] < 0.05:
        return f"the kernel two-sample test finds the synthetic distribution differs from the real one ({nums})"
    return (f"the kernel two-sample test finds no difference ({nums}); it is weak on texture, so read it "
            "with the classifier test")


def memorization_verdict(mem: dict) -> str:
    frac, exp = mem["fraction_above"], mem["expected_fraction"]
    nums = (f"{frac:.1%} of synthetic volumes are closer to a training subject than {1 - exp:.0%} of real "
            f"held-out subjects are (expected {exp:.1%}; {mem['n_duplicates']} near-exact copies)")
    if mem["flagged"]:
        return f"{nums}: flagged as copying the training set"
    return f"{nums}: no sign of copying"


def headline(metrics: dict) -> dict:
    """The calibration panel's numbers of one evaluation (full or light)."""
    out = {"n_synthetic": metrics["n_synthetic"],
           "msssim": {k: metrics["msssim"][k]["mean"] for k in ("real_syn", "syn_syn", "real_real")},
           "diversity": {k: metrics["diversity"][k] for k in ("zero_diversity", "identical_pairs")},
           "mmd_rbf": {k: metrics["mmd"]["rbf"]["real_syn"][k] for k in ("mmd2", "p_value")},
           "memorization": {k: metrics["memorization"][k] for k in ("fraction_above", "flagged")},
           "verdicts": dict(metrics["verdicts"])}
    if "c2st" in metrics:
        out["c2st"] = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")} for v, r in metrics["c2st"]["views"].items()}
    if "features" in metrics:
        out["features"] = {k: metrics["features"].get(k) for k in ("frechet", "frechet_ratio", "precision", "recall",
                                                                   "density", "coverage")}
    return out


__all__ = ["FAMILIES", "FAMILY_NAMES", "c2st_with_audit", "collect_verdicts", "diversity_family", "fidelity_verdict",
           "headline", "memorization_verdict", "mmd_verdict"]
