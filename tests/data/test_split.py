"""Participant-level cohort split and export of a prepared cohort back to NIfTI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurodit.data.cohort import read_cohort
from neurodit.data.prepare import load_prepared, prepare
from neurodit.data.split import export_prepared, split_cohort
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
    src = make_tiny_cohort(n=10)
    a = split_cohort(src, tmp_path / "a1", tmp_path / "a2", seed=1)[1]
    b = split_cohort(src, tmp_path / "b1", tmp_path / "b2", seed=1)[1]
    assert list(_ids(a)["participant_id"]) == list(_ids(b)["participant_id"])


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
