"""The rows of a comparison: one generator's numbers picked from its evaluation and downstream results,
its training and sampling budget, and the ranking of all rows (schema in :mod:`neurodit.compare.schema`).
"""

from __future__ import annotations

from pathlib import Path

from neurodit.downstream.config import arm_name
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


def _frechet_ratio(feats: dict) -> float | None:
    """The Fréchet distance / its real-vs-real floor (computed for a metrics.json that predates the field)."""
    from neurodit.metrics.features import frechet_ratio

    if feats.get("frechet_ratio") is not None:
        return feats["frechet_ratio"]
    return frechet_ratio(feats.get("frechet"), (feats.get("floor") or {}).get("frechet"))


def make_row(item: dict, metrics: dict, ds_results: dict | None, budget: str, cost: dict, syn_rel: str,
         ds_rel: str | None) -> dict:
    c2st = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")}
            for v, r in (metrics.get("c2st") or {}).get("views", {}).items()}
    feats = metrics.get("features") or {}
    rbf = metrics["mmd"]["rbf"]["real_syn"]
    div, mem = metrics["diversity"], metrics["memorization"]
    down = None
    if ds_results is not None:  # the one DS_DIR of the comparison: this row's cohort is named by the row
        arms, mixed = ds_results["arms"], arm_name("sex/real+synthetic", item["name"])
        comp = next((c for c in ds_results["comparisons"] if c["name"] == f"{mixed} vs sex/real"), None)
        if comp is not None:
            ba = comp["metrics"]["balanced_accuracy"]
            down = {"real": arms["sex/real"]["metrics"]["balanced_accuracy"]["mean"],
                    "real_synthetic": arms[mixed]["metrics"]["balanced_accuracy"]["mean"],
                    "gain": ba["mean_diff"], "ci95": ba["ci95"], "p_wilcoxon": ba["p_wilcoxon"],
                    "outcome": comp["outcome"], "n_runs": ba["n_pairs"]}
    return {"name": item["name"], "label": item["label"], "budget": budget, "kind": item["kind"],
            "input": str(item["path"]), "synthetic": syn_rel, "eval": f"eval-{item['name']}",
            "downstream_dir": ds_rel, "n_synthetic": metrics["n_synthetic"],
            "quality": {"c2st": c2st, "c2st_worst_auc": max((r["auc"] for r in c2st.values()), default=None),
                        "frechet": feats.get("frechet"), "frechet_ratio": _frechet_ratio(feats),
                        "precision": feats.get("precision"),
                        "recall": feats.get("recall"),
                        "mmd_rbf": {"mmd2": rbf["mmd2"], "p_value": rbf["p_value"]}},
            "diversity": {k: div[k] for k in ("syn_syn", "real_real", "low_diversity", "zero_diversity")},
            "memorization": {k: mem[k] for k in ("fraction_above", "expected_fraction", "flagged", "n_duplicates")},
            "downstream": down, "cost": cost, "verdicts": dict(metrics.get("verdicts", {})),
            # ranked unless it re-emits training subjects (near-exact copies) or one image: the audit's
            # fraction above the held-out percentile is noisy on small held-out sets (and flags a PCA of few
            # subjects, whose samples live in the training span), so it is shown, not used to disqualify
            "eligible": not (mem["n_duplicates"] > 0 or div["zero_diversity"])}


def _worst_view(row: dict) -> dict | None:
    """The C2ST view that tells a row's volumes from real best ({auc, auc_ci95, p_value}), or None."""
    views = row["quality"]["c2st"].values()
    return max(views, key=lambda v: v["auc"]) if views else None


def _told_apart(row: dict) -> bool:
    """Some C2ST view tells the row's volumes from real (p < 0.05, the judge's own rule:
    :func:`neurodit.metrics.c2st.c2st_report`)."""
    return any(v["p_value"] < 0.05 for v in row["quality"]["c2st"].values())


def _c2st_sentence(ranked: list[dict]) -> tuple[str | None, str]:
    """(best name or None, clause) of the eligible rows ordered by worst-view C2ST AUC, lowest first.

    A best is named only on a shown difference: the lowest worst-view AUC's 95 % CI lies wholly below the
    runner-up's, or no view tells the leader from real while a view tells every other row apart."""
    if not ranked:
        return None, "no generator qualifies for the classifier test"
    lead = ranked[0]
    w = _worst_view(lead)
    shown = (f"worst-view C2ST AUC {w['auc']:.2f}, 95% CI {w['auc_ci95'][0]:.2f} to {w['auc_ci95'][1]:.2f}, "
             f"p {w['p_value']:.2g}")
    if len(ranked) == 1:
        return None, f"one generator ranked by the classifier test: {lead['label']} ({shown})"
    w2 = _worst_view(ranked[1])
    other = f"{ranked[1]['label']}'s {w2['auc_ci95'][0]:.2f} to {w2['auc_ci95'][1]:.2f}"
    if w["auc_ci95"][1] < w2["auc_ci95"][0]:
        return lead["name"], f"best by the classifier test: {lead['label']} ({shown}; its CI lies below {other})"
    if not _told_apart(lead) and all(_told_apart(r) for r in ranked[1:]):
        return lead["name"], (f"best by the classifier test: {lead['label']} ({shown}; no view tells it from "
                              "real, a view tells every other ranked generator apart)")
    return None, (f"no generator is clearly closest to real by the classifier test (lowest: {lead['label']}, "
                  f"{shown}, overlapping {other})")


def _gain_text(r: dict) -> str:
    d = r["downstream"]
    return f"{r['label']} ({d['gain']:+.3f}, 95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"


def _downstream_sentence(ranked: list[dict]) -> tuple[str | None, list[str]]:
    """(best name or None, clauses) of the eligible rows with downstream results, largest gain first.

    "helped" / "hurt" are the downstream experiment's own outcomes (:func:`neurodit.downstream.stats.verdict`:
    the gain's bootstrap 95 % CI excludes 0 and the Wilcoxon p < 0.05). A best is named only where the
    outcome is "helped" and, when other rows helped too, its CI lies above the next one's; rows that hurt are
    named. Without either: no claim."""
    helped = [r for r in ranked if r["downstream"]["outcome"] == "helped"]
    hurt = [r for r in ranked if r["downstream"]["outcome"] == "hurt"]
    best, parts = None, []
    if helped:
        lead = helped[0]
        if len(helped) == 1 or lead["downstream"]["ci95"][0] > helped[1]["downstream"]["ci95"][1]:
            best = lead["name"]
            parts.append(f"best by downstream gain: {_gain_text(lead)} balanced accuracy")
        else:
            parts.append("downstream accuracy raised by " + ", ".join(map(_gain_text, helped))
                         + ", none clearly above the others")
    if hurt:
        parts.append("downstream accuracy lowered by " + ", ".join(map(_gain_text, hurt)))
    if ranked and not helped and not hurt:
        parts.append("no generator clearly changes downstream accuracy")
    return best, parts


def rank_rows(rows: list[dict]) -> tuple[dict, dict, str]:
    """(ranking, best, summary sentence) of comparison rows.

    The rankings order every row (the table shows them all); ``best`` names a row, and the summary calls it
    best, only where the ranking rests on a shown difference (see :func:`_c2st_sentence`,
    :func:`_downstream_sentence` and the module docstring of :mod:`neurodit.compare`); ``best["overall"]``
    is the C2ST best (the overall ranking is the C2ST order with ineligible rows last)."""
    inf = float("inf")

    def c2st_key(r):
        w = r["quality"]["c2st_worst_auc"]
        return inf if w is None else w

    by_c2st = sorted(rows, key=c2st_key)
    by_gain = sorted([r for r in rows if r["downstream"] is not None], key=lambda r: r["downstream"]["gain"],
                     reverse=True)
    overall = [r for r in by_c2st if r["eligible"]] + [r for r in by_c2st if not r["eligible"]]
    best_c2st, c2st_part = _c2st_sentence([r for r in by_c2st if r["eligible"] and _worst_view(r) is not None])
    best_gain, gain_parts = _downstream_sentence([r for r in by_gain if r["eligible"]])
    best = {"c2st": best_c2st, "downstream": best_gain, "overall": best_c2st}
    excluded = [r["label"] for r in rows if not r["eligible"]]
    flagged = [r["label"] for r in rows if r["eligible"] and r["memorization"]["flagged"]]
    summary = "; ".join([c2st_part, *gain_parts]) + (
        f"; not ranked (copies of training subjects or zero diversity): {', '.join(excluded)}" if excluded else "") + (
        f"; memorization audit flags {', '.join(flagged)}" if flagged else "") + "."
    summary = summary[0].upper() + summary[1:]
    return ({"c2st": [r["name"] for r in by_c2st], "downstream": [r["name"] for r in by_gain],
             "overall": [r["name"] for r in overall]}, best, summary)


__all__ = ["budget_and_cost", "make_row", "rank_rows", "read_info"]
