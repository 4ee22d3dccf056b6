"""End to end: all six arms on tiny cohorts, results.json with verdicts, atomic output, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import write_labelled_cohort
from neurodit.downstream.config import SOURCE_ARMS, TARGET_ARMS
from neurodit.downstream.experiment import DownstreamConfig, run_experiment
from neurodit.downstream.labelled import labelled_from_table
from neurodit.errors import NeuroditError

FAST = dict(folds=2, seeds=2, epochs=3, patience=3, batch_size=8, shape=(16, 16, 16), n_boot=500, threads=1)


def test_end_to_end_six_arms(make_set, tmp_path):
    source = make_set(24, side=16, seed=1, sessions=2, name="source")  # 2 sessions per participant
    synthetic = make_set(12, side=16, seed=2, prefix="syn", name="synthetic")
    target = make_set(16, side=16, seed=3, classes=("CN", "AD"), name="target")
    out = run_experiment(source, target, tmp_path / "ds", synthetic, DownstreamConfig(**FAST))

    res = json.loads((out / "results.json").read_text())
    assert list(res["arms"]) == list(SOURCE_ARMS + TARGET_ARMS)
    for arm in res["arms"].values():
        assert arm["n_runs"] == 4  # 2 folds x 2 seeds
        for m in ("balanced_accuracy", "f1", "roc_auc", "accuracy"):
            s = arm["metrics"][m]
            assert len(s["values"]) == 4 and 0.0 <= s["mean"] <= 1.0
            assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    assert len(res["comparisons"]) == 5
    for c in res["comparisons"]:
        assert c["outcome"] in ("helped", "hurt", "no clear effect")
        assert "balanced accuracy, 95% CI" in c["verdict"] and c["metrics"]["roc_auc"]["n_pairs"] == 4
        a = res["arms"][c["arm"]]["metrics"]["balanced_accuracy"]["values"]
        b = res["arms"][c["baseline"]]["metrics"]["balanced_accuracy"]["values"]
        assert c["metrics"]["balanced_accuracy"]["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert res["verdict"]["summary"].startswith("Sex: adding synthetic data to the sex classifier")
    assert "AD vs CN: synthetic data in the sex pretraining" in res["verdict"]["summary"]
    assert res["data"]["source"] == {"n_volumes": 48, "n_participants": 24, "classes": ["F", "M"],
                                     "n_per_class": [12, 12], "dropped": {}}
    assert res["timing"]["models_trained"] == 2 * (2 * 3 + 2 + 2 * 3)

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 * 4
    assert set(runs.loc[runs.arm == "sex/real+synthetic", "n_train_synthetic"]) == {12}
    assert set(runs.loc[runs.arm == "sex/real", "n_train_synthetic"]) == {0}
    # paired: same test participants in every arm of a task; real+synthetic validates on the real arm's
    # validation participants (synthetic data only ever enters training)
    key = ["task", "seed", "fold"]
    assert runs.groupby(key)["n_test"].nunique().eq(1).all()
    real = runs[runs.arm == "sex/real"].set_index(["seed", "fold"])
    both = runs[runs.arm == "sex/real+synthetic"].set_index(["seed", "fold"])
    assert (real["n_val"] == both["n_val"]).all() and (real["n_train"] + 12 == both["n_train"]).all()
    preds = pd.read_csv(out / "predictions.csv")
    assert not preds["participant_id"].str.startswith("syn").any()  # tests are always real
    for (arm, _seed), g in preds.groupby(["arm", "seed"]):
        ids = sorted(g["participant_id"])
        expected = sorted(set(source.groups)) if arm.startswith("sex") else sorted(set(target.groups))
        assert ids == expected, arm  # each real participant tested exactly once per seed, all arms alike
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        "source-real-seed0.safetensors", "source-real-seed1.safetensors",
        "source-real_synthetic-seed0.safetensors", "source-real_synthetic-seed1.safetensors"]
    for png in ("arms.png", "roc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["folds"] == 2 and run["seed"] == 0 and "torch" in run["versions"]


def test_without_synthetic_runs_real_arms(make_set, tmp_path):
    source = make_set(12, side=16, seed=1)
    target = make_set(12, side=16, seed=3, classes=("CN", "AD"))
    cfg = DownstreamConfig(**{**FAST, "seeds": 1, "epochs": 1, "freeze_backbone": True})
    res = json.loads((run_experiment(source, target, tmp_path / "ds", None, cfg) / "results.json").read_text())
    assert list(res["arms"]) == ["sex/real", "ad/scratch", "ad/init-real"]
    assert [c["name"] for c in res["comparisons"]] == ["ad/init-real vs ad/scratch"]
    assert "frozen" in res["source_models"]


def test_bad_input_leaves_no_output(make_set, tmp_path):
    source = make_set(12, side=16, seed=1)
    clash = make_set(6, side=16, seed=2)  # ids sub-0000.. collide with the source
    target = make_set(12, side=16, seed=3)
    with pytest.raises(NeuroditError, match="synthetic ids must be distinct"):
        run_experiment(source, target, tmp_path / "a", clash, DownstreamConfig(**FAST))
    assert not (tmp_path / "a").exists()
    one_class = make_set(12, side=16, seed=3)
    one_class.labels[:] = 0
    with pytest.raises(NeuroditError, match="per class"):  # fails inside the run, after source models
        run_experiment(source, one_class, tmp_path / "b", None, DownstreamConfig(**{**FAST, "seeds": 1}))
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []  # no partial folder either


def test_labels_from_table_mci_and_synthetic_rows():
    table = pd.DataFrame({"participant_id": ["a", "b", "c", "d", "e"],
                          "diagnosis": ["CN", "AD", "MCI", None, "CN"], "synthetic": [0, 0, 0, 0, 1],
                          "sex": ["F", "M", "F", "M", "F"]})
    vols = np.zeros((5, 2, 2, 2), np.float32)
    ds = labelled_from_table(table, vols, "diagnosis", name="t.tsv")
    assert list(ds.groups) == ["a", "b"] and list(ds.labels) == [0, 1]
    assert ds.dropped == {"synthetic": 1, "no diagnosis": 1, "MCI": 1}
    ds = labelled_from_table(table, vols, "diagnosis", name="t.tsv", include_mci=True)
    assert list(ds.groups) == ["a", "b", "c"] and list(ds.labels) == [0, 1, 1]
    assert ds.classes == ("CN", "MCI+AD")
    ds = labelled_from_table(table, vols, "sex", name="t.tsv", synthetic=None)
    assert list(ds.labels) == [0, 1, 0, 1, 0]
    with pytest.raises(NeuroditError, match="t.tsv: participants.tsv has no 'diagnosis' labels"):
        labelled_from_table(table.drop(columns="diagnosis"), vols, "diagnosis", name="t.tsv")


def test_cli_on_cohort_folders(make_set, tmp_path):
    from neurodit.cli import app

    write_labelled_cohort(tmp_path / "src", make_set(12, side=16, seed=1, sessions=2), "sex")
    write_labelled_cohort(tmp_path / "syn", make_set(6, side=16, seed=2, prefix="syn"), "sex", synthetic=True)
    write_labelled_cohort(tmp_path / "tgt", make_set(12, side=16, seed=3, classes=("CN", "AD")), "diagnosis")
    args = ["downstream", "--source", str(tmp_path / "src"), "--synthetic", str(tmp_path / "syn"),
            "--target", str(tmp_path / "tgt"), "--out", str(tmp_path / "ds"), "--shape", "16", "16", "16",
            "--folds", "2", "--seeds", "1", "--epochs", "1", "--augment", "--set", "threads=1",
            "--set", "n_boot=200"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "ds" / "results.json").read_text())
    assert len(res["arms"]) == 6 and res["config"]["augment"] is True
    assert res["data"]["source"]["n_volumes"] == 24 and res["data"]["synthetic"]["n_participants"] == 6
    assert "Sex: adding synthetic data" in result.output

    # a target without diagnosis labels: one error line naming the table, exit 2, no output
    pd.read_csv(tmp_path / "tgt" / "participants.tsv", sep="\t").drop(columns="diagnosis").to_csv(
        tmp_path / "tgt" / "participants.tsv", sep="\t", index=False)
    bad = CliRunner().invoke(app, [str(tmp_path / "ds2") if a == str(tmp_path / "ds") else a for a in args])
    assert bad.exit_code == 2
    assert "error:" in bad.output and "participants.tsv has no 'diagnosis' labels" in bad.output
    assert not (tmp_path / "ds2").exists()


def test_arms_filter_runs_only_the_sex_arms_without_a_target(make_set, tmp_path):
    source = make_set(16, side=16, seed=1, name="source")
    synthetic = make_set(8, side=16, seed=2, prefix="syn", name="synthetic")
    cfg = DownstreamConfig(**{**FAST, "seeds": 1, "epochs": 2}, arms=("sex/real", "sex/real+synthetic"))
    out = run_experiment(source, None, tmp_path / "ds", synthetic, cfg)
    res = json.loads((out / "results.json").read_text())
    assert list(res["arms"]) == ["sex/real", "sex/real+synthetic"] and set(res["data"]) == {"source", "synthetic"}
    assert [c["name"] for c in res["comparisons"]] == ["sex/real+synthetic vs sex/real"]
    assert res["timing"]["models_trained"] == 2 * 2  # 2 folds x 2 arms, no full source models
    assert res["verdict"]["summary"].startswith("Sex: adding synthetic data") and res["config"]["arms"] == [
        "sex/real", "sex/real+synthetic"]
    assert not list((out / "models").iterdir())
    with pytest.raises(NeuroditError, match="need a TARGET"):
        run_experiment(source, None, tmp_path / "ds2", synthetic, DownstreamConfig(**FAST))
    with pytest.raises(NeuroditError, match="unknown downstream arm"):
        DownstreamConfig(arms=("sex/fake",))
    assert not (tmp_path / "ds2").exists()
