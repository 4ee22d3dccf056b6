"""`neurodit sample`: a cohort folder that `neurodit prepare` accepts, reproducible, label-selectable."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurodit.cli import app  # noqa: E402
from neurodit.errors import NeuroditError  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 3-step run of a 2-layer pixel DiT on a 12-subject phantom camcan cohort (16^3 grid)."""
    from helpers import train_tiny_dit

    return train_tiny_dit(tmp_path_factory.mktemp("sample"))[0]


def test_cli_sample_writes_cohort_that_prepare_accepts(run_dir, tmp_path):
    from neurodit.data.prepare import load_prepared, prepare

    res = CliRunner().invoke(app, ["sample", str(run_dir), "--n", "5", "--out", str(tmp_path / "syn"),
                                   "--steps", "3", "--seed", "1", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "syn" / "participants.tsv", sep="\t")
    assert list(table["participant_id"]) == [f"syn-{i:06d}" for i in range(1, 6)]
    assert list(table["sex"]) == ["F", "M", "F", "M", "F"]  # balanced without --label
    assert (table["synthetic"] == 1).all()
    files = sorted((tmp_path / "syn").glob("syn-*.nii.gz"))
    assert len(files) == 5
    img = nib.load(files[0])
    vol = np.asarray(img.dataobj, dtype=np.float32)
    grid = yaml.safe_load((run_dir / "prepare.json").read_text())["grid"]
    assert vol.shape == (16, 16, 16) and np.allclose(img.affine, np.asarray(grid["affine"]))
    mask = np.load(run_dir / "mask.npy")
    assert (vol[~mask] == 0).all() and vol.min() >= 0 and vol.max() <= 4e-3 + 1e-9  # mm2/s
    prep = prepare(tmp_path / "syn", tmp_path / "prep", shape=(16, 16, 16))
    assert len(load_prepared(prep)) == 5


def test_same_seed_same_volumes_any_batch_size(run_dir, tmp_path):
    from neurodit.sample import sample_diffusion

    a = sample_diffusion(run_dir, 3, tmp_path / "a", steps=3, seed=7, batch_size=3, progress=False)
    b = sample_diffusion(run_dir, 3, tmp_path / "b", steps=3, seed=7, batch_size=1, progress=False)
    c = sample_diffusion(run_dir, 3, tmp_path / "c", steps=3, seed=8, batch_size=3, progress=False)

    def load(d):
        return np.stack([np.asarray(nib.load(f).dataobj) for f in sorted(d.glob("*.nii.gz"))])

    va, vb, vc = load(a), load(b), load(c)
    assert np.allclose(va, vb, atol=1e-6)
    assert np.abs(va - vc).max() > 1e-5


def test_label_selection_and_errors(run_dir, tmp_path):
    from neurodit.sample import sample_diffusion

    out = sample_diffusion(run_dir, 4, tmp_path / "f", label=["sex=F"], steps=2, scheduler="dpm", progress=False)
    assert set(pd.read_csv(out / "participants.tsv", sep="\t")["sex"]) == {"F"}
    with pytest.raises(NeuroditError, match="no class matches"):
        sample_diffusion(run_dir, 2, tmp_path / "x", label=["sex=X"], steps=2, progress=False)
    with pytest.raises(NeuroditError, match="not a label column"):
        sample_diffusion(run_dir, 2, tmp_path / "y", label=["diagnosis=AD"], steps=2, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    res = CliRunner().invoke(app, ["sample", str(tmp_path), "--n", "1", "--out", str(tmp_path / "z")])
    assert res.exit_code == 2 and "not a finished neurodit run" in res.output


def test_no_scheduler_samples_with_the_runs_own_sampler(run_dir, tmp_path):
    """Without --scheduler a run samples with the sampler its training config names (a flow run of the
    tiny-p32 recipe: ab2), not the objective's default; a sampler of the other objective falls back to it."""
    import json

    from neurodit.runs import TrainedRun

    cfg_file = run_dir / "train_config.yaml"
    original = cfg_file.read_text()
    try:
        for objective, named, expected in (("flow", "heun", "heun"), ("flow", "ddim", "euler"), ("ddpm", "dpm", "dpm")):
            cfg = yaml.safe_load(original)
            cfg["sampler"] = named
            cfg["diffusion"]["objective"] = objective
            cfg_file.write_text(yaml.safe_dump(cfg))
            assert TrainedRun(run_dir).sampler == expected
        cfg = yaml.safe_load(original)  # this run: ddpm, whose default is ddim
        cfg["sampler"] = "dpm"
        cfg_file.write_text(yaml.safe_dump(cfg))
        out = tmp_path / "syn"
        res = CliRunner().invoke(app, ["sample", str(run_dir), "--n", "2", "--out", str(out), "--steps", "2"])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "run.json").read_text())["config"]["scheduler"] == "dpm"
    finally:
        cfg_file.write_text(original)
