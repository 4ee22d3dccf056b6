"""The rows of a comparison: one generator's numbers picked from its evaluation and downstream results,
its training and sampling budget, and the ranking of all rows (schema in :mod:`neurodit.compare.schema`).
"""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.generators.registry import DEFAULT
from neurodit.io import read_json


def read_info(path: Path) -> dict:
    """A run.json as a dict, or {} when it is missing or unreadable (budgets and costs are optional)."""
    try:
        return read_json(path) if path.is_file() else {}
    except NeuroditError:
        return {}


def budget_and_cost(syn_info: dict, run_info: dict, kind: str) -> tuple[str, dict]:
    """(budget sentence, cost dict) from a synthetic folder's run.json and its training run's run.json."""
    sampling = syn_info.get("sampling") or {}
    conf = syn_info.get("config") or {}
    cost = {"train_seconds": run_info.get("train_seconds"), "sample_seconds": sampling.get("seconds"),
            "sample_seconds_per_volume": sampling.get("seconds_per_volume"),
            "parameters": run_info.get("num_params"),
            "peak_rss_mb": run_info.get("peak_rss_mb") or sampling.get("peak_rss_mb"),
            "peak_gpu_mb": run_info.get("peak_gpu_mb") or sampling.get("peak_gpu_mb")}
    if syn_info.get("stage") == "baseline":
        budget = f"{conf.get('kind', '?')} reference generator (fitted in closed form on TRAIN)"
    elif run_info:
        rc = run_info.get("config") or {}
        gen = rc.get("generator") or (run_info.get("preset") or {}).get("name") or rc.get("preset") or DEFAULT
        parts = [str(gen)]
        if run_info.get("steps_trained") is not None:
            parts.append(f"{run_info['steps_trained']} steps")
        if run_info.get("train_seconds") is not None:
            parts.append(f"{run_info['train_seconds'] / 60:.1f} min training")
        if run_info.get("mixed_precision") is not None:
            parts.append(f"precision {run_info['mixed_precision']}")
        if conf.get("steps") is not None:
            parts.append(f"sampled with {conf.get('scheduler', '?')} {conf['steps']} steps, "
                         f"guidance {conf.get('guidance', '?')}")
        budget = ", ".join(parts)
    else:
        budget = "unknown (no run.json with training or sampling settings)" if kind == "synthetic" else "run"
    return budget, cost


def make_row(item: dict, metrics: dict, ds_results: dict | None, budget: str, cost: dict, syn_rel: str,
         ds_rel: str | None) -> dict:
    c2st = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")}
            for v, r in (metrics.get("c2st") or {}).get("views", {}).items()}
    feats = metrics.get("features") or {}
    rbf = metrics["mmd"]["rbf"]["real_syn"]
    div, mem = metrics["diversity"], metrics["memorization"]
    down = None
    if ds_results is not None:
        arms = ds_results["arms"]
        comp = next((c for c in ds_results["comparisons"] if c["name"] == "sex/real+synthetic vs sex/real"), None)
        if comp is not None:
            ba = comp["metrics"]["balanced_accuracy"]
            down = {"real": arms["sex/real"]["metrics"]["balanced_accuracy"]["mean"],
                    "real_synthetic": arms["sex/real+synthetic"]["metrics"]["balanced_accuracy"]["mean"],
                    "gain": ba["mean_diff"], "ci95": ba["ci95"], "p_wilcoxon": ba["p_wilcoxon"],
                    "outcome": comp["outcome"], "n_runs": ba["n_pairs"]}
    return {"name": item["name"], "label": item["label"], "budget": budget, "kind": item["kind"],
            "input": str(item["path"]), "synthetic": syn_rel, "eval": f"eval-{item['name']}",
            "downstream_dir": ds_rel, "n_synthetic": metrics["n_synthetic"],
            "quality": {"c2st": c2st, "c2st_worst_auc": max((r["auc"] for r in c2st.values()), default=None),
                        "frechet": feats.get("frechet"), "precision": feats.get("precision"),
                        "recall": feats.get("recall"),
                        "mmd_rbf": {"mmd2": rbf["mmd2"], "p_value": rbf["p_value"]}},
            "diversity": {k: div[k] for k in ("syn_syn", "real_real", "low_diversity", "zero_diversity")},
            "memorization": {k: mem[k] for k in ("fraction_above", "expected_fraction", "flagged", "n_duplicates")},
            "downstream": down, "cost": cost, "verdicts": dict(metrics.get("verdicts", {})),
            # ranked unless it re-emits training subjects (near-exact copies) or one image: the audit's
            # fraction above the held-out percentile is noisy on small held-out sets (and flags a PCA of few
            # subjects, whose samples live in the training span), so it is shown, not used to disqualify
            "eligible": not (mem["n_duplicates"] > 0 or div["zero_diversity"])}


def rank_rows(rows: list[dict]) -> tuple[dict, dict, str]:
    """(ranking, best, summary sentence) of comparison rows (see the module docstring)."""
    inf = float("inf")

    def c2st_key(r):
        w = r["quality"]["c2st_worst_auc"]
        return inf if w is None else w

    def gain_key(r):
        return -inf if r["downstream"] is None else r["downstream"]["gain"]

    by_c2st = sorted(rows, key=c2st_key)
    by_gain = sorted([r for r in rows if r["downstream"] is not None], key=gain_key, reverse=True)
    overall = [r for r in by_c2st if r["eligible"]] + [r for r in by_c2st if not r["eligible"]]
    ok_c2st = [r for r in by_c2st if r["eligible"] and r["quality"]["c2st_worst_auc"] is not None]
    ok_gain = [r for r in by_gain if r["eligible"]]
    best = {"c2st": ok_c2st[0]["name"] if ok_c2st else None,
            "downstream": ok_gain[0]["name"] if ok_gain else None,
            "overall": overall[0]["name"] if overall and overall[0]["eligible"] else None}
    parts = []
    if ok_c2st:
        r = ok_c2st[0]
        parts.append(f"best by the classifier test: {r['label']} (worst-view C2ST AUC "
                     f"{r['quality']['c2st_worst_auc']:.2f})")
    if ok_gain:
        r = ok_gain[0]
        d = r["downstream"]
        parts.append(f"best by downstream gain: {r['label']} ({d['gain']:+.3f} balanced accuracy, 95% CI "
                     f"{d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, {d['outcome']})")
    excluded = [r["label"] for r in rows if not r["eligible"]]
    flagged = [r["label"] for r in rows if r["eligible"] and r["memorization"]["flagged"]]
    summary = ("; ".join(parts) or "no generator qualifies") + (
        f"; not ranked (copies of training subjects or zero diversity): {', '.join(excluded)}" if excluded else "") + (
        f"; memorization audit flags {', '.join(flagged)}" if flagged else "") + "."
    summary = summary[0].upper() + summary[1:]
    return ({"c2st": [r["name"] for r in by_c2st], "downstream": [r["name"] for r in by_gain],
             "overall": [r["name"] for r in overall]}, best, summary)


__all__ = ["budget_and_cost", "make_row", "rank_rows", "read_info"]
