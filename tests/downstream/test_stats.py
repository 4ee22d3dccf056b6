"""Metrics, summaries and paired comparisons on cases with known answers."""

import math

import numpy as np
import pytest

from neurodit.downstream.stats import classification_metrics, paired_comparison, summarize, verdict


def test_classification_metrics_known_case():
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.4])  # predictions 0 0 1 0 1 0
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["f1"] == pytest.approx(0.5)  # precision 1/2, recall 1/2
    assert m["roc_auc"] == pytest.approx(7 / 8)  # 7 of 8 (pos, neg) pairs ordered correctly


def test_summarize_t_interval():
    s = summarize(np.array([0.6, 0.7, 0.8]))
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2}
    assert s["ci95"] == pytest.approx([0.7 - half, 0.7 + half])


def test_paired_comparison_consistent_gain():
    base = np.array([0.60, 0.62, 0.58, 0.65, 0.61, 0.63, 0.59, 0.64])
    arm = base + np.array([0.05, 0.04, 0.06, 0.05, 0.03, 0.07, 0.05, 0.05])
    c = paired_comparison(arm, base, n_boot=4000, test_train_ratio=0.5)
    assert c["mean_diff"] == pytest.approx(0.05)
    assert 0.03 <= c["ci95"][0] < 0.05 < c["ci95"][1] <= 0.07
    assert c["p_bootstrap"] < 0.01 and c["p_wilcoxon"] < 0.01
    assert c["p_corrected_t"] > c["p_wilcoxon"] * 0 and c["p_corrected_t"] < 0.01
    assert (c["wins"], c["losses"], c["ties"]) == (8, 0, 0)
    outcome, text = verdict(c, subject="synthetic data")
    assert outcome == "helped"
    assert text.startswith("synthetic data helped: +0.050 balanced accuracy, 95% CI +0.0")


def test_paired_comparison_no_effect_and_harm():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, 12)
    noise = rng.normal(0, 0.05, 12)
    c = paired_comparison(base + noise - noise.mean(), base, n_boot=4000)
    assert c["mean_diff"] == pytest.approx(0.0, abs=1e-12)
    assert c["ci95"][0] < 0 < c["ci95"][1] and c["p_wilcoxon"] > 0.2
    outcome, text = verdict(c, subject="synthetic data")
    assert outcome == "no clear effect" and "did not clearly help" in text
    worse = paired_comparison(base - 0.1, base, n_boot=2000)
    assert verdict(worse, subject="x")[0] == "hurt"
    ties = paired_comparison(base, base, n_boot=500)
    assert ties["mean_diff"] == 0 and math.isnan(ties["p_wilcoxon"])


def test_verdict_needs_wilcoxon_too():
    # 4 pairs, all better: the bootstrap CI excludes 0, but the smallest exact Wilcoxon p with 4 pairs is 0.125
    c = paired_comparison(np.array([0.61, 0.62, 0.63, 0.64]), np.full(4, 0.6), n_boot=2000, test_train_ratio=0.5)
    assert c["ci95"][0] > 0 and c["p_wilcoxon"] == pytest.approx(0.125)
    outcome, text = verdict(c, subject="synthetic data")
    assert outcome == "no clear effect"
    assert text.startswith("synthetic data did not clearly help (bootstrap CI excludes 0, Wilcoxon p >= 0.05)")
    assert "Wilcoxon p=0.12, corrected t p=" in text
