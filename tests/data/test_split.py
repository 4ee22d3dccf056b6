"""Participant-level cohort split and export of a prepared cohort back to NIfTI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurodit.data.cohort import read_cohort
from neurodit.data.prepare import export_prepared, load_prepared, prepare
from neurodit.data.split import split_cohort
from neurodit.errors import NeuroditError


def _ids(folder):
    return pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)


def test_split_keeps_sessions_of_a_participant_together(make_tiny_cohort, tmp_path):
    src = make_tiny_cohort(n=10, sessions=2)
    train, held = split_cohort(src, tmp_path / "train", tmp_path / "held", heldout_fraction=0.2, seed=3)
    t, h = _ids(train), _ids(held)
    assert len(t) + len(h) == 20  # every volume lands on one side
    assert not set(t["participant_id"]) & set(h["participant_id"])
    assert len(set(h["participant_id"])) == 2  # 10 participants, 20% held out
    assert (h.groupby("participant_id").size() == 2).all()  # both sessions stay together
    # the outputs are valid cohort folders with the same voxels as the source files
    c_train = read_cohort(train)
    assert len(c_train) == len(t)
    first = c_train.table.iloc[0]
    src_file = src / f"{first['participant_id']}_{first['session_id']}_md.nii.gz"
    np.testing.assert_array_equal(nib.load(first["path"]).get_fdata(), nib.load(src_file).get_fdata())
    # stratified by sex: both sides keep both classes
    assert set(t["sex"]) == {"F", "M"} and set(h["sex"]) == {"F", "M"}


def test_split_is_seeded(make_tiny_cohort, tmp_path):
    """Same seed, same held-out participants; other seeds, other held-out sets (a split that ignored
    its seed would give one set for all)."""
    src = make_tiny_cohort(n=10)

    def held(seed, name):
        return tuple(_ids(split_cohort(src, tmp_path / f"{name}t", tmp_path / f"{name}h", seed=seed)[1])
                     ["participant_id"])

    assert held(1, "a") == held(1, "b")
    assert len({held(seed, f"s{seed}") for seed in range(6)}) >= 3  # 2 of 10 held out: 45 possible sets


def test_split_command_writes_both_cohorts_with_run_json(make_tiny_cohort, tmp_path):
    from typer.testing import CliRunner

    from neurodit.cli import app

    src = make_tiny_cohort(n=10)
    argv = ["split", str(src), "--train-out", str(tmp_path / "t"), "--heldout-out", str(tmp_path / "h"),
            "--heldout-fraction", "0.2", "--seed", "4"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    split_cohort(src, tmp_path / "ft", tmp_path / "fh", heldout_fraction=0.2, seed=4)
    for side in ("t", "h"):  # the command is the function: same participants, same files
        assert (tmp_path / side / "participants.tsv").read_bytes() == (tmp_path / f"f{side}" / "participants.tsv"
                                                                        ).read_bytes()
        run = json.loads((tmp_path / side / "run.json").read_text())
        assert run["seed"] == 4 and run["stage"] == "split"
    again = CliRunner().invoke(app, argv)  # outputs exist: refused, exit 2, nothing touched
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_split_refuses_too_few_participants(make_tiny_cohort, tmp_path):
    src = make_tiny_cohort(n=3)
    with pytest.raises(NeuroditError, match="too few participants"):
        split_cohort(src, tmp_path / "a", tmp_path / "b", heldout_fraction=0.2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_prepared_round_trips_to_model_range(make_tiny_cohort, tmp_path):
    src = make_tiny_cohort(n=4)
    prep_dir = prepare(src, tmp_path / "prep", shape=(16, 16, 16))
    out = export_prepared(prep_dir, tmp_path / "export")
    prep = load_prepared(prep_dir)
    cohort = read_cohort(out)
    assert list(cohort.table["participant_id"]) == list(prep.table["participant_id"])
    img = nib.load(cohort.table["path"].iloc[0])
    np.testing.assert_allclose(img.affine, prep.grid.affine, atol=1e-6)
    vol = np.asarray(img.dataobj, dtype=np.float32)
    # back in mm²/s: ventricles near 3e-3, and exactly the prepared volume after normalisation
    assert 2.0e-3 < vol.max() < 3.5e-3
    np.testing.assert_allclose(prep.norm.to_model(vol)[prep.mask], prep.volumes[0][prep.mask], atol=1e-6)
    # it is accepted again as input, on the same grid
    again = prepare(out, tmp_path / "prep2", shape=(16, 16, 16))
    np.testing.assert_allclose(load_prepared(again).volumes[0][prep.mask], prep.volumes[0][prep.mask], atol=1e-5)


def test_split_command_out_dir_is_the_issue_contract(make_tiny_cohort, tmp_path):
    """`neurodit split COHORT --out DIR --heldout-fraction F --seed S` writes DIR/train and DIR/heldout, the
    same split as the function; mixing --out with --train-out, or half a pair, is one clear error."""
    from typer.testing import CliRunner

    from neurodit.cli import app

    src = make_tiny_cohort(n=10)
    res = CliRunner().invoke(app, ["split", str(src), "--out", str(tmp_path / "s"), "--heldout-fraction", "0.3",
                                   "--seed", "2"])
    assert res.exit_code == 0, res.output
    split_cohort(src, tmp_path / "ft", tmp_path / "fh", heldout_fraction=0.3, seed=2)
    for side, ref in (("train", "ft"), ("heldout", "fh")):
        assert (tmp_path / "s" / side / "participants.tsv").read_text() == (tmp_path / ref / "participants.tsv").read_text()
    for bad in (["--out", str(tmp_path / "x"), "--train-out", str(tmp_path / "y")], ["--train-out", str(tmp_path / "y")]):
        res = CliRunner().invoke(app, ["split", str(src), *bad])
        assert res.exit_code == 2 and "give --out DIR" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
