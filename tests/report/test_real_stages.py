"""The report reads what the real stages write: `evaluate` and `run_downstream` on tiny cohorts.

Catches drift between the report and the metrics.json / results.json schemas (~15 s on 2 cores).
"""

from __future__ import annotations

import json
import re

from report_stages import write_synthetic_cohort

from helpers import write_tiny_cohort
from neurodit.downstream import run_downstream
from neurodit.metrics.evaluate import EvalConfig, evaluate
from neurodit.report import build_report
from neurodit.report.html import fmt

SHAPE, VOXEL = (24, 28, 24), 8.0


def test_report_of_real_evaluate_and_downstream(tmp_path):
    real = write_tiny_cohort(tmp_path / "camcan", n=8, shape=SHAPE, voxel_size=VOXEL, seed=0)
    adni = write_tiny_cohort(tmp_path / "adni", n=8, shape=SHAPE, voxel_size=VOXEL, seed=1, diagnosis=True)
    syn = write_synthetic_cohort(tmp_path / "synthetic", n=4)
    evaluate(real, syn, tmp_path / "eval",
             cfg=EvalConfig(max_pairs=4, permutations=20, bootstrap=50, coherence_pairs=4, figures=True))
    run_downstream(real, adni, tmp_path / "downstream", syn, folds=2, seeds=1, shape=(16, 16, 16), epochs=2,
                   patience=1, n_boot=200, threads=1)
    page = build_report([tmp_path], tmp_path / "report.html").read_text()

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    results = json.loads((tmp_path / "downstream" / "results.json").read_text())
    ms = metrics["msssim"]
    for key in ("real_real", "real_syn", "syn_syn"):
        assert f'<td class="num">{fmt(ms[key]["mean"])}</td>' in page, key
    assert fmt(metrics["mmd"]["rbf"]["real_syn"]["mmd2"]) in page
    assert f"expected {metrics['memorization']['expected_fraction']:.1%}" in page
    for name in metrics["figures"]:
        assert f'alt="{name}"' in page, name
    for sentence in (results["verdict"]["synthetic_for_sex"], results["verdict"]["synthetic_for_transfer"]):
        assert sentence in page.split('id="summary"')[1].split("</section>")[0]
    for arm in results["arms"]:
        assert f"<td>{arm}</td>" in page, arm
    assert 'alt="arms"' in page and 'alt="roc"' in page
    sections = re.findall(r'<section[^>]* id="([a-z]+)"', page)
    assert sections[:5] == ["summary", "images", "similarity", "memorization", "downstream"]
    assert "Not run: no evaluation" not in page and "Not run: no downstream" not in page
