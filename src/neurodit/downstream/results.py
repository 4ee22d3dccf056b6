"""The ``results.json`` of the downstream experiment: per-arm summaries, paired
comparisons with plain-words verdicts (schema in :mod:`neurodit.downstream.experiment`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurodit.config import to_dict
from neurodit.downstream.config import SOURCE_ARMS, SYNTHETIC_ARMS, TARGET_ARMS, DownstreamConfig, arm_name
from neurodit.downstream.schema import SCHEMA
from neurodit.downstream.stats import METRICS, paired_comparison, summarize, verdict

ARM_TEXT = {
    "sex/real": "sex from real source participants",
    "sex/real+synthetic": "sex from real source participants plus all synthetic volumes",
    "sex/synthetic": "sex from synthetic volumes only, tested on real participants",
    "ad/scratch": "AD vs CN from random initialisation",
    "ad/init-real": "AD vs CN, backbone from the full sex/real model of the seed",
    "ad/init-real+synthetic": "AD vs CN, backbone from the full sex/real+synthetic model of the seed",
}
# (arm, baseline, subject of the plain-words verdict; {syn} names the synthetic cohort)
COMPARISONS = (
    ("sex/real+synthetic", "sex/real", "adding {syn} to the sex classifier"),
    ("sex/synthetic", "sex/real", "training on {syn} instead of real data (sex)"),
    ("ad/init-real", "ad/scratch", "sex pretraining on real data (AD vs CN)"),
    ("ad/init-real+synthetic", "ad/init-real", "{syn} in the sex pretraining (AD vs CN)"),
    ("ad/init-real+synthetic", "ad/scratch", "sex pretraining on real+{syn} (AD vs CN)"),
)


def _per_cohort(base: str, cohorts: list[str | None]) -> list[str | None]:
    """The cohorts an arm ``base`` runs for: every one for a synthetic arm, none (once) for a real-only arm."""
    return (cohorts or [None]) if base in SYNTHETIC_ARMS else [None]


def build_results(runs: pd.DataFrame, cfg: DownstreamConfig, data: dict, ratios: dict[str, list[float]],
                  seconds: float, models_trained: int, cohorts: list[str | None] = ()) -> dict:
    """The ``results.json`` content (schema in :mod:`neurodit.downstream.experiment`).

    ``runs``: one row per task/arm/seed/fold with the metrics; ``data``: the cohort summaries;
    ``ratios``: test/train participant ratio per fold, by task ("sex", "ad"); ``cohorts``: the synthetic
    cohorts' names ([None] for one unnamed cohort, [] for none).
    """
    cohorts = list(cohorts)
    arms: dict[str, dict] = {}
    for base in SOURCE_ARMS + TARGET_ARMS:  # arms in base order, each base's cohorts side by side
        for cohort in _per_cohort(base, cohorts):
            arm = arm_name(base, cohort)
            sub = runs[runs["arm"] == arm].sort_values(["seed", "fold"])
            if sub.empty:
                continue
            arms[arm] = {"task": str(sub["task"].iloc[0]), "cohort": cohort,
                         "description": ARM_TEXT[base] + (f" (cohort {cohort})" if cohort else ""),
                         "n_runs": int(len(sub)), "metrics": {m: summarize(sub[m].to_numpy()) for m in METRICS}}
    comparisons = []
    for arm_base, base_base, subject in COMPARISONS:
        for cohort in _per_cohort(arm_base, cohorts):
            arm, base = arm_name(arm_base, cohort), arm_name(base_base, cohort)
            if arm not in arms or base not in arms:
                continue
            a = runs[runs["arm"] == arm].sort_values(["seed", "fold"])
            b = runs[runs["arm"] == base].sort_values(["seed", "fold"])
            assert (a[["seed", "fold"]].to_numpy() == b[["seed", "fold"]].to_numpy()).all()  # paired runs
            ratio = float(np.mean(ratios["sex" if arm.startswith("sex") else "ad"]))
            per_metric = {m: paired_comparison(a[m].to_numpy(), b[m].to_numpy(), n_boot=cfg.n_boot,
                                               seed=cfg.seed, test_train_ratio=ratio) for m in METRICS}
            said = subject.format(syn=f"synthetic data ({cohort})" if cohort else "synthetic data")
            outcome, sentence = verdict(per_metric["balanced_accuracy"], subject=said)
            comparisons.append({"name": f"{arm} vs {base}", "task": arms[arm]["task"], "arm": arm,
                                "baseline": base, "cohort": cohort, "question": f"did {said} help?",
                                "metrics": per_metric, "outcome": outcome, "verdict": sentence})

    def verdicts(arm_base: str, base_base: str) -> str | None:  # every cohort's sentence, in cohort order
        said = [c["verdict"] for c in comparisons
                if c["arm"] == arm_name(arm_base, c["cohort"]) and c["baseline"] == base_base]
        return "; ".join(said) or None

    syn_sex = verdicts("sex/real+synthetic", "sex/real")
    syn_ad = verdicts("ad/init-real+synthetic", "ad/init-real")
    if syn_sex and syn_ad:
        summary = f"Sex: {syn_sex}. AD vs CN: {syn_ad}."
    elif syn_sex:
        summary = f"Sex: {syn_sex}." + ("" if "target" in data else " (AD vs CN arms not run)")
    else:
        summary = "no synthetic data given: only the real-data arms ran"
    return {
        "schema": SCHEMA,
        "config": to_dict(cfg),
        "data": data,
        "source_models": ("each seed's target models are initialised from that seed's full source model, "
                          "trained on all real source participants (plus all synthetic volumes for "
                          "real+synthetic) with a participant-grouped validation split for early stopping; "
                          f"head replaced, backbone {'frozen' if cfg.freeze_backbone else 'finetuned'}"),
        "arms": arms,
        "comparisons": comparisons,
        "verdict": {"synthetic_for_sex": syn_sex, "synthetic_for_transfer": syn_ad, "summary": summary},
        "timing": {"seconds": round(seconds, 2), "models_trained": models_trained},
    }
