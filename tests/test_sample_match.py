"""`neurodit sample --match`: a synthetic cohort with a participants table's exact class counts (sex x age
bin, ages binned with the run's own edges), for every generator with labels, ids never taken from the
table, and bad tables refused (exit 2, nothing written)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurodit.cli import app  # noqa: E402

# bins <30 | 30-60 | >=60: no phantom subject is under 30, so "<30" is a class the runs never saw
AGE_BINS = [30.0, 60.0]
# 7 rows: F|30-60 x2, F|>=60 x1, M|30-60 x1, M|>=60 x3 (60.0 falls in >=60: bins are [lo, hi))
MATCH = pd.DataFrame({"participant_id": ["sub-a", "syn-000001", "syn-000009", "sub-d", "sub-e", "sub-f", "sub-g"],
                      "sex": ["F", "F", "F", "M", "M", "M", "M"],
                      "age": [31.0, 59.9, 61.0, 45.0, 60.0, 70.5, 88.0]})
EXPECTED = {("F", "30-60"): 2, ("F", ">=60"): 1, ("M", "30-60"): 1, ("M", ">=60"): 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 1-step tiny DiT and a PCA run, both labelled sex*age_bin on the 12-subject phantom."""
    from helpers import train_tiny_dit
    from neurodit.generators.base import fit
    from neurodit.train import resolve_train_config

    root = tmp_path_factory.mktemp("match")
    dit, prep = train_tiny_dit(root, steps=1, label="sex*age_bin", age_bins=AGE_BINS)
    pca = fit(prep, resolve_train_config(None, None, prep_dir=str(prep), out=str(root / "pca"), generator="pca",
                                         label="sex*age_bin", age_bins=AGE_BINS))
    return {"dit": dit, "pca": pca, "prep": prep}


def _table(tmp_path, df=MATCH, name="participants.tsv"):
    path = tmp_path / name
    df.to_csv(path, sep="\t", index=False)
    return path


@pytest.mark.parametrize("generator", ["dit", "pca"])
def test_match_reproduces_the_tables_class_counts(runs, generator, tmp_path):
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["sample", str(runs[generator]), "--match", str(_table(tmp_path)),
                                   "--out", str(out), "--steps", "2", "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert "wrote 7 volumes" in res.output
    syn = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(syn.columns) == ["participant_id", "sex", "age_bin", "age", "synthetic"]
    assert syn.groupby(["sex", "age_bin"]).size().to_dict() == EXPECTED
    # row i is the table's row i: same sex, its age, and the bin of that age under the run's edges
    assert list(syn["sex"]) == list(MATCH["sex"]) and list(syn["age"]) == list(MATCH["age"])
    assert list(syn["age_bin"]) == ["30-60", "30-60", ">=60", "30-60", ">=60", ">=60", ">=60"]
    assert len(list(out.glob("syn-*.nii.gz"))) == 7
    info = json.loads((out / "run.json").read_text())
    assert info["class_counts"] == {"F|30-60": 2, "F|>=60": 1, "M|30-60": 1, "M|>=60": 3}


def test_synthetic_ids_never_collide_with_the_tables(runs, tmp_path):
    from neurodit.data.synthetic import synthetic_ids

    # the table already holds syn-000001 and syn-000009: numbering starts after the largest
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["sample", str(runs["pca"]), "--match", str(_table(tmp_path)),
                                   "--out", str(out), "--seed", "0"])
    assert res.exit_code == 0, res.output
    ids = list(pd.read_csv(out / "participants.tsv", sep="\t")["participant_id"])
    assert ids == [f"syn-{i:06d}" for i in range(10, 17)]
    assert not set(ids) & set(MATCH["participant_id"])
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{i}.nii.gz" for i in ids]
    assert synthetic_ids(2) == ["syn-000001", "syn-000002"]
    assert synthetic_ids(2, ["syn-000002", "syn-x", "sub-syn-000005"]) == ["syn-000003", "syn-000004"]


def _refused(run, tmp_path, args, *needles):
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["sample", str(run), "--out", str(out), "--steps", "2", *args])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # rich may wrap the message
    for needle in needles:
        assert needle in text, (needle, res.output)
    assert not out.exists()


@pytest.mark.parametrize("generator", ["dit", "pca"])
def test_bad_match_tables_exit_2_and_write_nothing(runs, generator, tmp_path):
    run = runs[generator]
    _refused(run, tmp_path, ["--match", str(tmp_path / "nope.tsv")], "participants table not found", "nope.tsv")
    no_age = _table(tmp_path, MATCH.drop(columns="age"), "no_age.tsv")
    _refused(run, tmp_path, ["--match", str(no_age)], "no 'age' column", "no_age.tsv")
    no_sex = _table(tmp_path, MATCH.drop(columns="sex"), "no_sex.tsv")
    _refused(run, tmp_path, ["--match", str(no_sex)], "no 'sex' column", "no_sex.tsv")
    young = _table(tmp_path, MATCH.assign(age=[25.0] + list(MATCH["age"][1:])), "young.tsv")
    _refused(run, tmp_path, ["--match", str(young)], "1 rows have a class the run was not trained on", "F|<30",
             "young.tsv")
    table = _table(tmp_path)
    _refused(run, tmp_path, ["--match", str(table), "--n", "5"], "--n 5 disagrees with the 7 rows")
    _refused(run, tmp_path, ["--match", str(table), "--label", "sex=F"], "--match and --label do not combine")
    _refused(run, tmp_path, [], "give --n")


def test_match_with_the_agreeing_n_and_a_cohort_folder(runs, tmp_path):
    _table(tmp_path)  # tmp_path/participants.tsv: the folder stands for its table
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["sample", str(runs["pca"]), "--match", str(tmp_path), "--n", "7",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out / "participants.tsv", sep="\t")) == 7


def test_a_sex_only_run_matches_the_sex_counts_and_claims_no_age(runs, tmp_path):
    """A run labelled by sex alone: the table's sex counts, and no age column (the run knows nothing of age)."""
    from neurodit.generators.base import fit, sample
    from neurodit.train import resolve_train_config

    prep = runs["prep"]
    run = fit(prep, resolve_train_config(None, None, prep_dir=str(prep), out=str(tmp_path / "pca_sex"),
                                         generator="pca", label="sex"))
    out = sample(run, None, tmp_path / "syn", match=_table(tmp_path, MATCH.assign(age=[10.0] * 7)))
    syn = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(syn.columns) == ["participant_id", "sex", "synthetic"]
    assert syn["sex"].value_counts().to_dict() == {"M": 4, "F": 3}


def test_age_bins_flag_spellings():
    from neurodit.config import parse_age_bins
    from neurodit.errors import NeuroditError

    assert parse_age_bins(["40,60"]) == parse_age_bins(["40", "60"]) == [40.0, 60.0]
    assert parse_age_bins(None) is None  # not given: the config's own edges stay
    with pytest.raises(NeuroditError, match="--age-bins must be numbers"):
        parse_age_bins(["forty"])
