"""neurodit.runs: run labels (LabelSpec, make_labels) and the run-folder files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurodit.errors import NeuroditError
from neurodit.generators.registry import DEFAULT
from neurodit.runs import (
    LabelSpec,
    age_bin_names,
    is_run_folder,
    make_labels,
    read_generator,
    write_run_files,
)


def test_combined_label_keeps_age_bin_order_and_round_trips():
    table = pd.DataFrame({"sex": ["M", "F", "F", "M", "F"], "age": [80, 30, 60, 45, 75]})
    spec, ids = make_labels(table, "sex*age_bin", [50, 70], Path("participants.tsv"))
    assert age_bin_names((50.0, 70.0)) == ["<50", "50-70", ">=70"]
    assert spec.columns == ("sex", "age_bin")
    assert spec.classes == ("F|<50", "F|50-70", "F|>=70", "M|<50", "M|>=70")  # young -> old per sex
    assert ids.tolist() == [4, 0, 1, 3, 2] and spec.null_class == 5
    assert spec.class_values(1) == {"sex": "F", "age_bin": "50-70"}
    assert spec.select({"sex": "M"}) == [3, 4]
    assert LabelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(NeuroditError, match="no class matches"):
        spec.select({"age_bin": "90+"})
    with pytest.raises(NeuroditError, match="not a label column"):
        spec.select({"diagnosis": "AD"})


def test_missing_label_names_the_file_and_line():
    table = pd.DataFrame({"sex": ["F", "n/a", "M"]})
    with pytest.raises(NeuroditError, match="missing on 1 rows.*line 3") as exc:
        make_labels(table, "sex", [], Path("p/participants.tsv"))
    assert "participants.tsv" in str(exc.value)


def test_write_run_files_writes_what_a_sampler_reads(tmp_path):
    from neurodit.models import load_preset
    from neurodit.tiling import TilingSpec, make_spec

    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "prepare.json").write_text('{"grid": {}, "normalization": {}}')
    (tmp_path / "prep" / "participants.tsv").write_text("participant_id\tsex\nsub-1\tF\nsub-2\tM\nsub-3\tM\n")
    spec_labels, ids = make_labels(pd.DataFrame({"sex": ["F", "M", "M"]}), "sex", [], tmp_path)
    mask = np.zeros((32, 32, 32), bool)
    mask[8:24] = True
    tiling = make_spec((32, 32, 32))
    write_run_files(tmp_path / "run", config={"preset": "tiny-p32", "seed": 3}, labels=spec_labels,
                    class_ids=ids, prep_dir=tmp_path / "prep", mask=mask, spec=tiling,
                    preset=load_preset("tiny-p32"), generator="dit")
    run = tmp_path / "run"
    assert json.loads((run / "labels.json").read_text())["counts"] == [1, 2]
    assert TilingSpec.from_dict(json.loads((run / "tiling.json").read_text())) == tiling
    assert json.loads((run / "preset.json").read_text())["patch_size"] == 32
    assert np.array_equal(np.load(run / "mask.npy"), mask)
    assert (run / "prepare.json").read_bytes() == (tmp_path / "prep" / "prepare.json").read_bytes()
    # the training participants stay with the run (the leakage check reads them)
    assert (run / "train_participants.tsv").read_bytes() == (tmp_path / "prep" / "participants.tsv").read_bytes()
    assert "seed: 3" in (run / "train_config.yaml").read_text()


def test_is_run_folder_needs_the_model_of_a_finished_run(tmp_path):
    """A run being trained (train_config.yaml, no model/ yet) is a run folder only with finished=False;
    a cohort-like folder is none; adding model/config.json finishes it."""
    run = tmp_path / "run"
    (run / "model").parent.mkdir()
    for name in ("labels.json", "prepare.json", "train_config.yaml"):
        (run / name).write_text("{}")
    assert not is_run_folder(run) and is_run_folder(run, finished=False)
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    assert is_run_folder(run) and read_generator(run) == DEFAULT
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "participants.tsv").write_text("participant_id\n")
    assert not is_run_folder(tmp_path / "cohort", finished=False) and not is_run_folder(tmp_path / "none")
