"""`neurodit sample --match`: a synthetic cohort with a table's class counts (sex x age bin), ids that never
collide with the table's, and bad tables refused before anything is written."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurodit.cli import app  # noqa: E402
from neurodit.errors import NeuroditError  # noqa: E402

AGE_BINS = [45.0]


@pytest.fixture(scope="module")
def binned(tmp_path_factory):
    """A 2-step tiny DiT trained with label sex*age_bin (edge 45 y); returns (run_dir, prep_dir)."""
    from helpers import train_tiny_dit

    return train_tiny_dit(tmp_path_factory.mktemp("match"), steps=2, label="sex*age_bin", age_bins=AGE_BINS)


def study_table(prep, path, ids=None, repeat=(0, 0, 1, 2, 3, 3, 3, 5)):
    """A participants.tsv of training rows picked by ``repeat`` (uneven class counts), new ids."""
    t = pd.read_csv(prep / "participants.tsv", sep="\t").iloc[list(repeat)][["participant_id", "sex", "age"]]
    t["participant_id"] = ids or [f"sub-s{i:02d}" for i in range(len(t))]
    t.to_csv(path, sep="\t", index=False)
    return t


def crosstab(sex, bins) -> dict[tuple[str, str], int]:
    return {k: int(v) for k, v in pd.Series(list(zip(sex, bins, strict=True))).value_counts().items()}


def test_match_reproduces_the_tables_sex_by_age_bin_counts(binned, tmp_path):
    run, prep = binned
    table = study_table(prep, tmp_path / "study.tsv")
    res = CliRunner().invoke(app, ["sample", str(run), "--match", str(tmp_path / "study.tsv"), "--out",
                                   str(tmp_path / "syn"), "--steps", "2", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    syn = pd.read_csv(tmp_path / "syn" / "participants.tsv", sep="\t")
    assert len(syn) == 8 and len(list((tmp_path / "syn").glob("syn-*.nii.gz"))) == 8
    want_bins = np.where(table["age"].to_numpy() < AGE_BINS[0], "<45", ">=45")
    assert crosstab(syn["sex"], syn["age_bin"]) == crosstab(table["sex"], want_bins)
    # row i of the cohort stands in for row i of the table: same sex, same bin, in order
    assert list(syn["sex"]) == list(table["sex"]) and list(syn["age_bin"]) == list(want_bins)
    # the matched row's age travels along (the per-subject age morphometry's CSF slope needs), inside its bin
    assert np.allclose(syn["age"], table["age"])
    assert ((syn["age"] < AGE_BINS[0]) == (syn["age_bin"] == "<45")).all()


def test_match_ids_never_collide_with_the_tables(binned, tmp_path):
    from neurodit.generators.base import sample

    run, prep = binned
    # the table to match is itself a synthetic cohort's: its ids are syn-000001 ... syn-000008
    table = study_table(prep, tmp_path / "t.tsv", ids=[f"syn-{i:06d}" for i in (1, 2, 3, 4, 5, 6, 7, 8)])
    out = sample(run, None, tmp_path / "syn", match=tmp_path / "t.tsv", steps=2, progress=False)
    syn = pd.read_csv(out / "participants.tsv", sep="\t")
    assert not set(syn["participant_id"]) & set(table["participant_id"])
    assert list(syn["participant_id"]) == [f"syn-{i:06d}" for i in range(9, 17)]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"syn-{i:06d}.nii.gz" for i in range(9, 17)]


@pytest.mark.parametrize("case, message", [
    ("missing", "participants table not found"),
    ("no_age", "no 'age' column"),
    ("n_disagrees", "disagrees with the 8 rows"),
    ("with_label", "do not combine"),
    ("neither", "give --n"),
])
def test_bad_match_exits_2_names_the_file_and_writes_nothing(binned, tmp_path, case, message):
    run, prep = binned
    tsv = tmp_path / "study.tsv"
    table = study_table(prep, tsv)
    if case == "missing":
        tsv = tmp_path / "nope.tsv"
    if case == "no_age":
        table.drop(columns=["age"]).to_csv(tsv, sep="\t", index=False)
    args = ["sample", str(run), "--out", str(tmp_path / "syn"), "--steps", "2"]
    args += {"n_disagrees": ["--match", str(tsv), "--n", "5"], "with_label": ["--match", str(tsv), "--label", "sex=F"],
             "neither": []}.get(case, ["--match", str(tsv)])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    if case != "neither":
        assert str(tsv) in res.output
    assert not (tmp_path / "syn").exists()


def test_a_class_the_run_lacks_is_refused_naming_the_table(tmp_path):
    from neurodit.runs import LabelSpec, plan_classes

    labels = LabelSpec("sex*age_bin", ("sex", "age_bin"), ("F|<50", "F|>=50", "M|<50"), (50.0,))
    pd.DataFrame({"participant_id": ["a", "b", "c"], "sex": ["F", "M", "M"], "age": [30, 40, 71]}).to_csv(
        tmp_path / "t.tsv", sep="\t", index=False)
    with pytest.raises(NeuroditError, match=r"1 rows have a class the run was not trained on \(M\|>=50; first: line 4"):
        plan_classes(labels, match=tmp_path / "t.tsv")
    ok = pd.DataFrame({"participant_id": ["a", "b", "c", "d"], "sex": ["F", "M", "F", "f"], "age": [30, 40, 50, 71]})
    ok.to_csv(tmp_path / "ok.tsv", sep="\t", index=False)
    plan = plan_classes(labels, match=tmp_path / "ok.tsv")
    assert plan.class_of == (0, 2, 1, 1) and plan.counts(labels) == {"F|<50": 1, "F|>=50": 2, "M|<50": 1}


def test_match_works_for_the_pca_generator(binned, tmp_path):
    from neurodit.generators.base import fit, sample
    from neurodit.train import resolve_train_config

    _, prep = binned
    cfg = resolve_train_config(None, None, prep_dir=str(prep), out=str(tmp_path / "pca"), generator="pca",
                               label="sex*age_bin", age_bins=AGE_BINS)
    run = fit(prep, cfg)
    table = study_table(prep, tmp_path / "study.tsv")
    out = sample(run, None, tmp_path / "syn", match=tmp_path / "study.tsv")
    syn = pd.read_csv(out / "participants.tsv", sep="\t")
    want_bins = np.where(table["age"].to_numpy() < AGE_BINS[0], "<45", ">=45")
    assert crosstab(syn["sex"], syn["age_bin"]) == crosstab(table["sex"], want_bins)
