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
    assert sections[:6] == ["summary", "images", "judge", "similarity", "memorization", "downstream"]
    assert "Not run: no evaluation" not in page and "Not run: no downstream" not in page


def test_report_of_real_morphometry_and_features(tmp_path):
    """The morphometry and features families exactly as metrics.morphometry / metrics.features write them
    (evaluate wires them in later); the encoder is a fixed 2x2x2 average pooling (8 features)."""
    from torch import nn

    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.io import write_json
    from neurodit.metrics.encoder import Encoder
    from neurodit.metrics.features import feature_metrics
    from neurodit.metrics.morphometry import morphometry_metrics

    real, syn = (read_cohort(write_tiny_cohort(tmp_path / n, n=6, shape=SHAPE, voxel_size=VOXEL, seed=s))
                 for n, s in (("camcan", 0), ("other", 3)))
    r, s = load_volumes(real)[0], load_volumes(syn)[0]
    fam = morphometry_metrics(r, s, None, VOXEL ** 3 / 1000, real.table, syn.table)
    enc = Encoder(nn.Sequential(nn.AdaptiveAvgPool3d(2), nn.Flatten()), {"kind": "test", "source": "pool",
                                                                        "sha256": "c0ffee" * 10, "dim": 8})
    feats = feature_metrics(r[:4], s, enc, k=3, reference_mm2s=r[4:])
    (tmp_path / "eval").mkdir()
    write_json(tmp_path / "eval" / "metrics.json", {"morphometry": fam, "features": feats})
    page = build_report([tmp_path / "eval"], tmp_path / "r.html").read_text()
    judge = page.split('id="judge"')[1].split("</section>")[0]
    assert fam["verdict"] in judge
    for m in fam["measures"].values():
        assert fmt(m["real_mean"]) in judge and fmt(m["ks_p"]) in judge
    for value in (feats["frechet"], feats["recall"], feats["floor"]["frechet"], feats["floor"]["coverage"]):
        assert f'<td class="num">{fmt(value)}</td>' in judge
    assert "c0ffeec0ffee" in judge and "k lowered from 3 to 1" in judge  # the 2-volume floor set
