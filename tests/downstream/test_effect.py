"""Class effect size vs guidance (issue 21): planted differences, the margin of a fixed classifier, and the
folder layer end to end on a tiny pca run (which ignores guidance, so its effect must not move with it)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.downstream.config import DownstreamConfig
from neurodit.downstream.effect import class_effect, classifier_margin, guidance_effect, read_effect
from neurodit.errors import NeuroditError

SIDE = 10


def noisy(n: int, shift: float, seed: int = 0, sd: float = 0.1):
    """(n, SIDE^3) white-noise volumes, labels 0/1 alternating; class 1 shifted by ``shift`` in half the
    voxels (the first SIDE/2 planes). True difference-map RMS: shift / sqrt(2); true Cohen's d RMS: that / sd."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0.0, sd, (n, SIDE, SIDE, SIDE))
    labels = np.arange(n) % 2
    v[labels == 1, : SIDE // 2] += shift
    return v.astype(np.float32), labels


def test_planted_difference_is_recovered_with_a_ci_around_it():
    vols, labels = noisy(60, 0.05)
    e = class_effect(vols, labels, np.ones((SIDE,) * 3, bool), n_boot=500)
    true = 0.05 / np.sqrt(2)
    assert e["n_per_class"] == [30, 30] and e["n_voxels"] == SIDE**3
    assert e["diff_rms_excess"]["value"] == pytest.approx(true, rel=0.1)
    lo, hi = e["diff_rms_excess"]["ci95"]
    assert lo < true < hi and hi - lo < 0.3 * true
    assert e["d_rms_excess"]["value"] == pytest.approx(true / 0.1, rel=0.1)
    # the raw RMS also holds the noise: sqrt(true^2 + noise^2)
    assert e["diff_rms"]["value"] == pytest.approx(np.hypot(true, e["diff_rms_noise"]), rel=0.05)
    assert e["mean_abs_d"]["value"] > e["mean_abs_d_null"]


def test_no_difference_gives_about_zero_with_a_ci_covering_zero():
    vols, labels = noisy(40, 0.0, seed=1)
    e = class_effect(vols, labels, np.ones((SIDE,) * 3, bool), n_boot=500, seed=2)
    for k in ("diff_rms_excess", "d_rms_excess"):
        lo, hi = e[k]["ci95"]
        assert lo < 0 < hi, (k, e[k])
    assert abs(e["diff_rms_excess"]["value"]) < 0.3 * e["diff_rms_noise"]
    # raw values sit at their noise levels
    assert e["diff_rms"]["value"] == pytest.approx(e["diff_rms_noise"], rel=0.1)
    assert e["mean_abs_d"]["value"] == pytest.approx(e["mean_abs_d_null"], rel=0.1)


def test_set_size_does_not_change_the_excess():
    # the raw RMS of a small set is inflated by noise; the excess over noise is not
    mask = np.ones((SIDE,) * 3, bool)
    small = class_effect(*noisy(20, 0.05, seed=3), mask, n_boot=200)
    large = class_effect(*noisy(200, 0.05, seed=4), mask, n_boot=200)
    assert small["diff_rms"]["value"] > 1.3 * large["diff_rms"]["value"]
    assert small["diff_rms_excess"]["value"] == pytest.approx(large["diff_rms_excess"]["value"], rel=0.15)


def test_bad_input_is_one_clear_error():
    vols, labels = noisy(10, 0.0)
    with pytest.raises(NeuroditError, match="mask shape"):
        class_effect(vols, labels, np.ones((3, 3, 3), bool))
    with pytest.raises(NeuroditError, match="2 volumes per class"):
        class_effect(vols, np.r_[1, np.zeros(9, int)], np.ones((SIDE,) * 3, bool))


def test_margin_is_larger_on_an_exaggerated_set(make_set):
    from neurodit.downstream import nets
    from neurodit.downstream.train import fit_classifier

    train = make_set(24, effect=0.3, seed=0)
    model = nets.build_classifier("small")
    fit_classifier(model, train.volumes, train.labels, train.volumes, train.labels, epochs=8, amp=False, seed=0)
    held = make_set(16, effect=0.3, seed=1)
    strong = make_set(16, effect=0.9, seed=2)  # the same difference, three times as large
    m_real = classifier_margin(model, held.volumes, held.labels, n_boot=200)
    m_strong = classifier_margin(model, strong.volumes, strong.labels, n_boot=200)
    assert -1 <= m_real["margin"]["value"] < m_strong["margin"]["value"] <= 1
    assert m_strong["balanced_accuracy"]["value"] >= m_real["balanced_accuracy"]["value"]
    lo, hi = m_real["margin"]["ci95"]
    assert lo <= m_real["margin"]["value"] <= hi


# ------------------------------------------------------------------------------------------ folders
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(pca run, real cohort) on a 16^3 grid: 16 phantom camcan subjects."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare
    from neurodit.generators.base import fit
    from neurodit.train import resolve_train_config

    root = tmp_path_factory.mktemp("effect")
    cohort = make_phantom_cohort("camcan", 16, root / "cohort", seed=5, voxel_size=6.0)
    prep = prepare(cohort, root / "prep", shape=(16, 16, 16))
    cfg = resolve_train_config(None, None, prep_dir=str(prep), out=str(root / "pca"), generator="pca")
    return fit(prep, cfg), cohort


def test_guidance_effect_end_to_end_on_a_pca_run(tiny, tmp_path):
    run, real = tiny
    cfg = DownstreamConfig(shape=(16, 16, 16), epochs=3, patience=2)
    out = guidance_effect(run, real, tmp_path / "eff", guidances=(1.0, 3.0), n=12, steps=2, seed=0, n_boot=100,
                          config=cfg)
    data = read_effect(out)
    assert data["schema"] == "neurodit.effect/1" and not data["inputs"]["guidance_applies"]
    assert [s["guidance"] for s in data["synthetic"]] == [1.0, 3.0]
    assert (out / "effect.png").is_file() and (out / "run.json").is_file()
    assert (out / "samples" / "g1" / "participants.tsv").is_file() and (out / "samples" / "g3").is_dir()
    # pca ignores guidance: same seed, same volumes, the same effect at every guidance
    a, b = (s["effect"] for s in data["synthetic"])
    assert a["diff_rms"]["value"] == pytest.approx(b["diff_rms"]["value"], rel=1e-6)
    assert a["mean_abs_d"]["value"] == pytest.approx(b["mean_abs_d"]["value"], rel=1e-6)
    assert data["synthetic"][0]["margin"]["margin"]["value"] == pytest.approx(
        data["synthetic"][1]["margin"]["margin"]["value"], abs=1e-6)
    assert "ignores guidance" in data["verdict"] and "\n" not in data["verdict"]
    assert data["classifier"]["n_test"] >= 2

    from neurodit.report import build_report

    html = build_report([out], tmp_path / "r.html").read_text()
    assert 'id="effect"' in html and "Class effect vs guidance" in html


def test_cli_writes_effect_json_and_rejects_a_missing_run(tiny, tmp_path):
    from neurodit.cli import app

    run, real = tiny
    r = CliRunner().invoke(app, ["effect", str(run), "--real", str(real), "--out", str(tmp_path / "e"),
                                 "--guidance", "1,2", "--n", "8", "--steps", "2", "--n-boot", "50",
                                 "--no-keep-samples"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "effect.json").is_file() and not (tmp_path / "e" / "samples").exists()
    assert read_effect(tmp_path / "e")["synthetic"][1]["samples"] is None
    r = CliRunner().invoke(app, ["effect", str(tmp_path / "nope"), "--real", str(real), "--out", str(tmp_path / "f")])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "run folder not found" in r.output
    assert not (tmp_path / "f").exists()


def test_read_effect_rejects_another_schema(tmp_path):
    (tmp_path / "effect.json").write_text('{"schema": "neurodit.downstream/1"}')
    with pytest.raises(NeuroditError, match="effect.json.*neurodit.effect/1"):
        read_effect(tmp_path)
