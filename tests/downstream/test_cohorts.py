"""Several named synthetic cohorts in one experiment: every cohort's arms, the real-only arms trained once,
identical splits and initialisations for all cohorts, clashing ids refused, the CLI's NAME=DIR."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import write_labelled_cohort
from neurodit.downstream.config import arm_name, split_arm
from neurodit.downstream.experiment import DownstreamConfig, run_experiment
from neurodit.errors import NeuroditError

TINY = dict(folds=2, seeds=1, epochs=1, patience=1, batch_size=8, shape=(16, 16, 16), n_boot=200, threads=1)
SEX_ARMS = ["sex/real", "sex/real+synthetic[a]", "sex/real+synthetic[b]", "sex/synthetic[a]", "sex/synthetic[b]"]
AD_ARMS = ["ad/scratch", "ad/init-real", "ad/init-real+synthetic[a]", "ad/init-real+synthetic[b]"]


def test_arm_names_split_back():
    assert arm_name("sex/synthetic", "pca") == "sex/synthetic[pca]" and arm_name("sex/real", "pca") == "sex/real"
    assert arm_name("sex/real+synthetic") == "sex/real+synthetic"
    assert split_arm("ad/init-real+synthetic[dit-2]") == ("ad/init-real+synthetic", "dit-2")
    assert split_arm("ad/init-real") == ("ad/init-real", None)


@pytest.fixture
def sets(make_set):
    return {"source": make_set(16, seed=1, name="source"),
            "a": make_set(8, seed=2, prefix="syna", name="a.tsv"),
            "b": make_set(8, seed=4, prefix="synb", effect=0.0, name="b.tsv"),
            "target": make_set(12, seed=3, classes=("CN", "AD"), name="target")}


def test_two_cohorts_share_the_real_arms_and_the_splits(sets, tmp_path):
    out = run_experiment(sets["source"], sets["target"], tmp_path / "ds", {"a": sets["a"], "b": sets["b"]},
                         DownstreamConfig(**TINY))
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == "neurodit.downstream/2" and list(res["arms"]) == SEX_ARMS + AD_ARMS
    for name, arm in res["arms"].items():
        ba = arm["metrics"]["balanced_accuracy"]
        assert arm["n_runs"] == 2 and ba["ci95"][0] <= ba["mean"] <= ba["ci95"][1], name
        assert arm["cohort"] == split_arm(name)[1]
    assert set(res["data"]["synthetic"]) == {"a", "b"} and res["data"]["synthetic"]["b"]["n_participants"] == 8
    names = [c["name"] for c in res["comparisons"]]
    assert len(names) == 9 and "sex/real+synthetic[b] vs sex/real" in names
    assert "ad/init-real+synthetic[a] vs ad/init-real" in names and "ad/init-real vs ad/scratch" in names
    for cohort in ("a", "b"):  # each cohort's sex and transfer verdicts named in the summary
        assert f"adding synthetic data ({cohort}) to the sex classifier" in res["verdict"]["summary"]
        assert f"synthetic data ({cohort}) in the sex pretraining" in res["verdict"]["summary"]

    # the real-only arms trained once: per fold 1 + 2 x 2 sex models and 2 + 2 AD models, plus 1 + 2 full
    runs = pd.read_csv(out / "runs.csv")
    assert runs["arm"].value_counts().to_dict() == dict.fromkeys(SEX_ARMS + AD_ARMS, 2)
    assert res["timing"]["models_trained"] == 2 * 5 + 3 + 2 * 4
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        "source-real-seed0.safetensors", "source-real_synthetic-a-seed0.safetensors",
        "source-real_synthetic-b-seed0.safetensors"]
    # paired across cohorts: the same (seed, fold) runs, real validation and test participants in every arm
    for task, g in runs.groupby("task"):
        assert g.groupby(["seed", "fold"])[["n_test"]].nunique().eq(1).all().all(), task
    mixed = runs[runs.arm.str.startswith("sex/real")].assign(real=lambda d: d.n_train - d.n_train_synthetic)
    assert set(mixed["n_train_synthetic"]) == {0, 8}  # one volume per synthetic participant here
    assert mixed.groupby(["seed", "fold"])[["n_val", "real"]].nunique().eq(1).all().all()
    preds = pd.read_csv(out / "predictions.csv")
    tested = preds.groupby(["task", "seed", "fold", "arm"])["participant_id"].apply(lambda s: tuple(sorted(s)))
    assert tested.groupby(level=["task", "seed", "fold"]).nunique().eq(1).all()

    # identical folds, validation splits and initialisations: cohort a alone gives the same numbers
    alone = run_experiment(sets["source"], None, tmp_path / "a", {"a": sets["a"]},
                           DownstreamConfig(**TINY, arms=("sex/real", "sex/real+synthetic")))
    solo = json.loads((alone / "results.json").read_text())
    for arm in ("sex/real", "sex/real+synthetic[a]"):
        got, want = res["arms"][arm]["metrics"], solo["arms"][arm]["metrics"]
        for m in ("balanced_accuracy", "roc_auc"):
            assert got[m]["values"] == pytest.approx(want[m]["values"], abs=1e-9), (arm, m)


def test_clashing_ids_and_bad_names_refused(sets, make_set, tmp_path):
    twin = make_set(8, seed=5, prefix="syna", name="twin.tsv")  # the ids of cohort a
    cfg = DownstreamConfig(**TINY)
    with pytest.raises(NeuroditError, match=r"twin\.tsv: participant ids also in the synthetic cohort 'a'"):
        run_experiment(sets["source"], sets["target"], tmp_path / "x", {"a": sets["a"], "b": twin}, cfg)
    with pytest.raises(NeuroditError, match="also in the source cohort"):
        run_experiment(sets["source"], sets["target"], tmp_path / "x", {"a": make_set(8, seed=5)}, cfg)
    with pytest.raises(NeuroditError, match="synthetic cohort name 'a\\[1\\]'"):
        run_experiment(sets["source"], sets["target"], tmp_path / "x", {"a[1]": sets["a"]}, cfg)
    assert not list(tmp_path.iterdir())


def test_cli_takes_named_cohorts(make_set, tmp_path):
    from neurodit.cli import app

    write_labelled_cohort(tmp_path / "src", make_set(12, seed=1), "sex")
    write_labelled_cohort(tmp_path / "a", make_set(6, seed=2, prefix="syna"), "sex", synthetic=True)
    # b numbers its volumes as a does (two `neurodit sample` outputs): scoped by name, they go side by side
    write_labelled_cohort(tmp_path / "b", make_set(6, seed=4, prefix="syna"), "sex", synthetic=True)
    write_labelled_cohort(tmp_path / "tgt", make_set(12, seed=3, classes=("CN", "AD")), "diagnosis")
    args = ["downstream", "--source", str(tmp_path / "src"), "--target", str(tmp_path / "tgt"),
            "--synthetic", f"a={tmp_path / 'a'}", "--synthetic", f"b={tmp_path / 'b'}", "--out", str(tmp_path / "ds"),
            "--shape", "16", "16", "16", "--folds", "2", "--seeds", "1", "--epochs", "1", "--set", "threads=1",
            "--set", "n_boot=200"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # the spelling, several values after one flag, makes the same call
    one_flag = [a for a in args if a != f"b={tmp_path / 'b'}"]
    one_flag[one_flag.index("--synthetic", one_flag.index("--synthetic") + 1)] = f"b={tmp_path / 'b'}"
    one_flag.remove(f"b={tmp_path / 'b'}")
    one_flag.insert(one_flag.index(f"a={tmp_path / 'a'}") + 1, f"b={tmp_path / 'b'}")
    one_flag = [str(tmp_path / "ds1") if a == str(tmp_path / "ds") else a for a in one_flag]
    assert one_flag.count("--synthetic") == 1
    again = CliRunner().invoke(app, one_flag)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "ds1" / "results.json").read_text())["arms"].keys() == \
        json.loads((tmp_path / "ds" / "results.json").read_text())["arms"].keys()
    stray = CliRunner().invoke(app, one_flag + ["oops"])
    assert stray.exit_code == 2 and "unexpected argument 'oops'" in stray.output
    res = json.loads((tmp_path / "ds" / "results.json").read_text())
    assert list(res["arms"]) == SEX_ARMS + AD_ARMS
    run = json.loads((tmp_path / "ds" / "run.json").read_text())
    assert set(run["inputs"]["synthetic"]) == {"a", "b"}
    assert "synthetic data (a)" in result.output and "synthetic data (b)" in result.output

    # a cohort holding source ids: one error line naming it, exit 2, nothing written
    write_labelled_cohort(tmp_path / "c", make_set(6, seed=6), "sex", synthetic=True)
    bad = CliRunner().invoke(app, [f"b={tmp_path / 'c'}" if a == f"b={tmp_path / 'b'}" else
                                   str(tmp_path / "ds2") if a == str(tmp_path / "ds") else a for a in args])
    assert bad.exit_code == 2 and "participant ids also in the source cohort" in bad.output
    assert str(tmp_path / "c") in bad.output and not (tmp_path / "ds2").exists()
