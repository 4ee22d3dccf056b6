"""neurodit.data.leakage: where a generator's training participants are read from, and the refusal."""

from __future__ import annotations

import shutil

import pytest
import yaml

from helpers import write_tiny_cohort
from neurodit.data.leakage import TRAIN_TABLE, check_no_leakage, generator_training_set, run_training_set
from neurodit.data.prepare import prepare
from neurodit.errors import NeuroditError
from neurodit.io import write_json


@pytest.fixture
def fake_run(tmp_path):
    """What a RUN_DIR keeps of its data (prepare.json copy, train_config.yaml prep_dir), and a SYN_DIR
    whose run.json names it, as ``neurodit sample`` writes it."""
    cohort = write_tiny_cohort(tmp_path / "cohort", n=4)
    prep = prepare(cohort, tmp_path / "prep", shape=(8, 10, 8))
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(prep / "prepare.json", run / "prepare.json")
    (run / "train_config.yaml").write_text(yaml.safe_dump({"prep_dir": str(prep)}))
    syn = tmp_path / "syn"
    syn.mkdir()
    write_json(syn / "run.json", {"config": {"run_dir": str(run)}, "seed": 0})
    return cohort, prep, run, syn


def test_training_set_from_prep_dir_then_source_then_copy(fake_run):
    cohort, prep, run, syn = fake_run
    ids = {"sub-0001", "sub-0002", "sub-0003", "sub-0004"}
    found = run_training_set(run)
    assert found.ids == ids and found.source == str(prep / "participants.tsv")
    shutil.rmtree(prep)  # the prepared folder is gone: the cohort named by prepare.json "source"
    found = run_training_set(run)
    assert found.ids == ids and found.source.endswith("cohort/participants.tsv")
    (run / TRAIN_TABLE).write_text("participant_id\tsex\nsub-0009\tF\n")  # a copy kept in the run wins
    assert run_training_set(run).ids == {"sub-0009"}


def test_refusal_names_real_dir_and_one_id(fake_run, tmp_path):
    _, _, _, syn = fake_run
    with pytest.raises(NeuroditError, match=r"^\S*heldout: 1 held-out participant\(s\) were in the generator's "
                                            r"training set, e\.g\. sub-0003"):
        check_no_leakage(["sub-0003", "sub-0100"], tmp_path / "heldout", syn)
    assert check_no_leakage(["sub-0100"], tmp_path / "heldout", syn).ids >= {"sub-0001"}


def test_unknown_provenance_and_vanished_run(fake_run, tmp_path):
    cohort, prep, run, syn = fake_run
    bare = tmp_path / "bare"
    bare.mkdir()
    assert generator_training_set(bare) is None  # no run.json: nothing to check (reported as unchecked)
    shutil.rmtree(run)
    with pytest.raises(NeuroditError, match=r"syn/run\.json: cannot check for leakage: the generator's run "
                                            r"folder .*run no longer exists"):
        generator_training_set(syn)
