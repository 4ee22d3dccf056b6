"""evaluate: the C2ST section, per-family verdicts and the --calibrate panel of reference generators."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.io import read_json
from neurodit.metrics.evaluate import EvalConfig, evaluate_arrays

FAST = EvalConfig(max_pairs=60, permutations=100, bootstrap=200, coherence_pairs=20, figures=False,
                  c2st_views=("voxel", "texture"), c2st_permutations=50)


def test_calibration_panel_flags_mean_copy_and_noise(phantom):
    train, heldout, fresh = phantom["train"], phantom["heldout"], phantom["fresh"]
    sex = list(phantom["table"]["sex"])
    cfg = EvalConfig(**{**FAST.__dict__, "calibrate": True})
    m = evaluate_arrays(heldout, fresh, train, cfg, syn_labels=sex[24:36], train_labels=sex[:12])
    assert list(m["verdicts"])[:3] == ["c2st", "diversity", "memorization"]
    assert set(m["c2st"]["views"]) == {"voxel", "texture"} and m["c2st"]["real_side"] == "heldout"
    cal = m["calibration"]
    assert set(cal) == {"model", "pca", "noise", "copy", "mean", "labels"}
    assert cal["labels"]["pca"] == {"F": sex[24:36].count("F"), "M": sex[24:36].count("M")}  # same balance
    assert cal["mean"]["diversity"]["zero_diversity"] and "flagged as zero diversity" in cal["mean"]["verdicts"]["diversity"]
    assert not cal["model"]["diversity"]["zero_diversity"] and not cal["pca"]["diversity"]["zero_diversity"]
    assert cal["copy"]["memorization"]["flagged"] and cal["copy"]["memorization"]["fraction_above"] >= 0.9
    assert not cal["model"]["memorization"]["flagged"]
    for view in ("voxel", "texture"):
        assert cal["copy"]["c2st"][view]["auc"] < 0.65 and cal["copy"]["c2st"][view]["p_value"] > 0.05
    assert "only the audit catches it" in cal["copy"]["verdicts"]["c2st"]
    assert cal["noise"]["c2st"]["texture"]["auc"] > 0.9 and cal["noise"]["c2st"]["texture"]["p_value"] < 0.05
    assert "easy to tell apart" in cal["noise"]["verdicts"]["c2st"]


def test_cli_calibrate_and_c2st_flags(phantom, tmp_path):
    from neurodit.data.synthetic import write_synthetic_cohort
    from neurodit.io import write_nifti

    def folder(name, vols, sex):
        return write_synthetic_cohort(vols, {"sex": sex}, phantom["affine"], tmp_path / name, meta={})

    sex = list(phantom["table"]["sex"])
    real = tmp_path / "real"
    real.mkdir()
    for pid, v in zip(phantom["ids"]["heldout"], phantom["heldout"], strict=True):
        write_nifti(v, phantom["affine"], real / f"{pid}.nii.gz")
    (real / "participants.tsv").write_text("participant_id\tsex\n" + "".join(
        f"{p}\t{s}\n" for p, s in zip(phantom["ids"]["heldout"], sex[12:24], strict=True)))
    train = tmp_path / "train"
    train.mkdir()
    for pid, v in zip(phantom["ids"]["train"], phantom["train"], strict=True):
        write_nifti(v, phantom["affine"], train / f"{pid}.nii.gz")
    (train / "participants.tsv").write_text("participant_id\tsex\n" + "".join(
        f"{p}\t{s}\n" for p, s in zip(phantom["ids"]["train"], sex[:12], strict=True)))
    syn = folder("syn", phantom["fresh"], sex[24:36])
    out = tmp_path / "eval"
    base = ["evaluate", "--real", str(real), "--synthetic", str(syn), "--out", str(out), "--max-pairs", "30",
            "--permutations", "50"]
    res = CliRunner().invoke(app, [*base, "--train", str(train), "--calibrate", "--c2st-views", "voxel",
                                   "--c2st-real", "train+heldout"])
    assert res.exit_code == 0, res.output
    m = read_json(out / "metrics.json")
    assert m["c2st"]["real_side"] == "train+heldout" and list(m["c2st"]["views"]) == ["voxel"]
    assert m["c2st"]["views"]["voxel"]["n_real"] == 12  # balanced against the 12 synthetic
    assert set(m["calibration"]) >= {"pca", "noise", "copy", "mean"} and "c2st:" in res.output
    assert read_json(out / "run.json")["config"]["calibrate"] is True
    # feature metrics: our own encoder, trained on TRAIN_DIR only, cached by its hash, in every row of the panel
    f = m["features"]
    assert f["encoder"]["kind"] == "own" and len(f["encoder"]["sha256"]) == 64 and f["n_real"] == 12
    assert f["floor"]["n_reference"] == 12 and f["frechet"] >= 0 and 0 <= f["recall"] <= 1 and f["verdict"]
    assert all(0 <= m["calibration"][k]["features"]["recall"] <= 1 for k in ("model", "pca", "noise", "copy", "mean"))
    # morphometry: the grid's voxel volume (6 mm) and the tables' sexes reach it
    mo = m["morphometry"]
    assert mo["voxel_volume_ml"] == pytest.approx(0.216, rel=1e-6) and mo["n_real"] == 12
    assert mo["effects"]["brain_volume_sex_diff_ml"]["real"] is not None and "morphometry" in m["verdicts"]
    again = CliRunner().invoke(app, [*base[:5], "--out", str(tmp_path / "again"), *base[7:], "--train", str(train),
                                     "--c2st-views", "voxel"])
    assert again.exit_code == 0, again.output
    enc2 = read_json(tmp_path / "again" / "metrics.json")["features"]["encoder"]
    assert enc2["cached"] is True and enc2["sha256"] == f["encoder"]["sha256"]  # reused, not retrained
    for extra, msg in ((["--calibrate"], "--calibrate needs --train"),
                       (["--c2st-real", "all"], "unknown c2st_real"),
                       (["--c2st-views", "fft"], "unknown or no C2ST view")):
        bad = CliRunner().invoke(app, [*base[:5], "--out", str(tmp_path / "bad"), *base[7:], *extra])
        assert bad.exit_code == 2 and msg in bad.output, bad.output
        assert not (tmp_path / "bad").exists()
    assert np.isfinite(m["c2st"]["views"]["voxel"]["auc"])


@pytest.mark.parametrize("views", [("voxel",)])
def test_c2st_can_be_switched_off(phantom, views):
    cfg = EvalConfig(**{**FAST.__dict__, "c2st": False})
    m = evaluate_arrays(phantom["heldout"], phantom["fresh"], phantom["train"], cfg)
    assert "c2st" not in m and "c2st" not in m["verdicts"] and "diversity" in m["verdicts"]
