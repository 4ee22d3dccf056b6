"""The ``results.json`` of the downstream experiment: per-arm summaries, paired
comparisons with plain-words verdicts (schema in :mod:`neurodit.downstream.experiment`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurodit.config import to_dict
from neurodit.downstream.config import SOURCE_ARMS, TARGET_ARMS, DownstreamConfig
from neurodit.downstream.stats import METRICS, paired_comparison, summarize, verdict

ARM_TEXT = {
    "sex/real": "sex from real source participants",
    "sex/real+synthetic": "sex from real source participants plus all synthetic volumes",
    "sex/synthetic": "sex from synthetic volumes only, tested on real participants",
    "ad/scratch": "AD vs CN from random initialisation",
    "ad/init-real": "AD vs CN, backbone from the full sex/real model of the seed",
    "ad/init-real+synthetic": "AD vs CN, backbone from the full sex/real+synthetic model of the seed",
}
# (arm, baseline, subject of the plain-words verdict)
COMPARISONS = (
    ("sex/real+synthetic", "sex/real", "adding synthetic data to the sex classifier"),
    ("sex/synthetic", "sex/real", "training on synthetic instead of real data (sex)"),
    ("ad/init-real", "ad/scratch", "sex pretraining on real data (AD vs CN)"),
    ("ad/init-real+synthetic", "ad/init-real", "synthetic data in the sex pretraining (AD vs CN)"),
    ("ad/init-real+synthetic", "ad/scratch", "sex pretraining on real+synthetic data (AD vs CN)"),
)


def build_results(runs: pd.DataFrame, cfg: DownstreamConfig, data: dict, ratios: dict[str, list[float]],
                  seconds: float, models_trained: int) -> dict:
    """The ``results.json`` content (schema in :mod:`neurodit.downstream.experiment`).

    ``runs``: one row per task/arm/seed/fold with the metrics; ``data``: the cohort summaries;
    ``ratios``: test/train participant ratio per fold, by task ("sex", "ad").
    """
    arms: dict[str, dict] = {}
    for arm in SOURCE_ARMS + TARGET_ARMS:
        sub = runs[runs["arm"] == arm].sort_values(["seed", "fold"])
        if sub.empty:
            continue
        arms[arm] = {"task": str(sub["task"].iloc[0]), "description": ARM_TEXT[arm], "n_runs": int(len(sub)),
                     "metrics": {m: summarize(sub[m].to_numpy()) for m in METRICS}}
    comparisons = []
    for arm, base, subject in COMPARISONS:
        if arm not in arms or base not in arms:
            continue
        a = runs[runs["arm"] == arm].sort_values(["seed", "fold"])
        b = runs[runs["arm"] == base].sort_values(["seed", "fold"])
        assert (a[["seed", "fold"]].to_numpy() == b[["seed", "fold"]].to_numpy()).all()  # paired runs
        ratio = float(np.mean(ratios["sex" if arm.startswith("sex") else "ad"]))
        per_metric = {m: paired_comparison(a[m].to_numpy(), b[m].to_numpy(), n_boot=cfg.n_boot,
                                           seed=cfg.seed, test_train_ratio=ratio) for m in METRICS}
        outcome, sentence = verdict(per_metric["balanced_accuracy"], subject=subject)
        comparisons.append({"name": f"{arm} vs {base}", "task": arms[arm]["task"], "arm": arm,
                            "baseline": base, "question": f"did {subject} help?", "metrics": per_metric,
                            "outcome": outcome, "verdict": sentence})
    by_name = {c["name"]: c for c in comparisons}
    syn_sex = by_name.get("sex/real+synthetic vs sex/real")
    syn_ad = by_name.get("ad/init-real+synthetic vs ad/init-real")
    if syn_sex and syn_ad:
        summary = f"Sex: {syn_sex['verdict']}. AD vs CN: {syn_ad['verdict']}."
    elif syn_sex:
        summary = f"Sex: {syn_sex['verdict']}." + ("" if "target" in data else " (AD vs CN arms not run)")
    else:
        summary = "no synthetic data given: only the real-data arms ran"
    return {
        "schema": "neurodit.downstream/1",
        "config": to_dict(cfg),
        "data": data,
        "source_models": ("each seed's target models are initialised from that seed's full source model, "
                          "trained on all real source participants (plus all synthetic volumes for "
                          "real+synthetic) with a participant-grouped validation split for early stopping; "
                          f"head replaced, backbone {'frozen' if cfg.freeze_backbone else 'finetuned'}"),
        "arms": arms,
        "comparisons": comparisons,
        "verdict": {"synthetic_for_sex": syn_sex["verdict"] if syn_sex else None,
                    "synthetic_for_transfer": syn_ad["verdict"] if syn_ad else None,
                    "summary": summary},
        "timing": {"seconds": round(seconds, 2), "models_trained": models_trained},
    }
