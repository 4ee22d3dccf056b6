"""One generator interface: dit, ddpm3d and pca fit on a tiny phantom, sample valid cohorts through
`neurodit sample`, and resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.errors import NeuroditError
from neurodit.generators.base import fit, get_generator, sample
from neurodit.models.unet3d import UNet3D
from neurodit.runs import is_run_folder, read_generator


def check_cohort(out, n, grid_shape, mask):
    cohort = read_cohort(out)
    assert len(cohort.table) == n and (cohort.table["synthetic"] == 1).all()
    vols, grid = load_volumes(cohort, grid=None)
    assert vols.shape == (n, *grid_shape) and np.isfinite(vols).all() and (vols >= 0).all()
    assert (vols[:, ~mask] == 0).all() and (vols[:, mask] > 0).mean() > 0.5
    return cohort, vols


def test_registry_names_every_generator():
    assert [get_generator(g).name for g in ("dit", "ddpm3d", "pca")] == ["dit", "ddpm3d", "pca"]
    with pytest.raises(NeuroditError, match="unknown generator"):
        get_generator("gan")


def test_ddpm3d_resumes_to_the_uninterrupted_weights_and_samples_a_cohort(gen_cfg, gen_prep, tmp_path):
    full = fit(gen_prep, gen_cfg("full", max_steps=4))
    part = fit(gen_prep, gen_cfg("part", max_steps=2, checkpoint_every=1))
    resumed = fit(gen_prep, gen_cfg("part", max_steps=4, resume=True))
    assert resumed == part and read_generator(part) == "ddpm3d"
    for name in ("model/config.json", "model/model.safetensors", "preset.json", "samples/preview.png",
                 "labels.json", "mask.npy"):
        assert (part / name).is_file(), name
    info = json.loads((part / "run.json").read_text())
    assert info["resumed_from"] == 2 and info["steps_trained"] == 2 and info["generator"] == "ddpm3d"
    assert list(pd.read_csv(part / "loss.csv")["step"]) == [1, 2, 3, 4]
    a, b = UNet3D.from_pretrained(full / "model").state_dict(), UNet3D.from_pretrained(part / "model").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    with pytest.raises(NeuroditError, match="unet"):
        fit(gen_prep, gen_cfg("part", max_steps=6, resume=True, unet={"channels": [8, 8]}))

    res = CliRunner().invoke(app, ["sample", str(part), "--n", "3", "--out", str(tmp_path / "syn"),
                                   "--steps", "2", "--label", "sex=M"])
    assert res.exit_code == 0, res.output
    mask = np.load(part / "mask.npy")
    cohort, _ = check_cohort(tmp_path / "syn", 3, mask.shape, mask)
    assert list(cohort.table["sex"]) == ["M", "M", "M"]


def test_ddpm3d_with_the_flow_objective_samples_with_heun(gen_cfg, gen_prep, tmp_path):
    cfg = gen_cfg("flow", objective="flow")
    assert cfg.diffusion.objective == "flow" and cfg.sampler == "euler"
    run = fit(gen_prep, cfg)
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["diffusion"]["objective"] == "flow"
    out = sample(run, 2, tmp_path / "syn", steps=2, scheduler="heun", progress=False)
    mask = np.load(run / "mask.npy")
    check_cohort(out, 2, mask.shape, mask)
    with pytest.raises(NeuroditError, match="euler"):
        sample(run, 2, tmp_path / "bad", steps=2, scheduler="ddim", progress=False)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(NeuroditError, match="sampler"):
        gen_cfg("x", objective="flow", sampler="ddim")


def test_pca_run_folder_samples_resumes_and_matches_a_fresh_fit(gen_prep, gen_cfg, tmp_path):
    from neurodit.data.prepare import load_prepared, model_to_mm2s
    from neurodit.generators.pca import load_model
    from neurodit.generators.reference import fit_reference

    run = tmp_path / "pca"
    r = CliRunner().invoke(app, ["train", str(gen_prep), "--generator", "pca", "--out", str(run)])
    assert r.exit_code == 0, r.output
    assert read_generator(run) == "pca" and (run / "model" / "reference.safetensors").is_file()
    assert not list(run.rglob("*.pkl")) and not list(run.rglob("*.pt"))
    before = (run / "model" / "reference.safetensors").stat().st_mtime_ns
    assert fit(gen_prep, gen_cfg("pca", generator="pca", resume=True)) == run
    assert (run / "model" / "reference.safetensors").stat().st_mtime_ns == before
    assert is_run_folder(run)
    with pytest.raises(NeuroditError, match="components: None vs 2"):  # the diffusion runs' identity check
        fit(gen_prep, gen_cfg("pca", generator="pca", resume=True, components=2))
    with pytest.raises(NeuroditError, match="not empty"):
        fit(gen_prep, gen_cfg("pca", generator="pca"))

    r = CliRunner().invoke(app, ["sample", str(run), "--n", "4", "--out", str(tmp_path / "syn"), "--label", "sex=F"])
    assert r.exit_code == 0, r.output
    mask = np.load(run / "mask.npy")
    cohort, vols = check_cohort(tmp_path / "syn", 4, mask.shape, mask)
    assert list(cohort.table["sex"]) == ["F"] * 4
    # the saved model is the fitted one: same samples as a fresh fit with the same seed
    prep = load_prepared(gen_prep)
    real = model_to_mm2s(np.asarray(prep.volumes), prep.norm, prep.mask)
    sexes = list(prep.table["sex"])
    fresh, _ = fit_reference(real, sexes, prep.mask, "pca").sample(4, "F", seed=0)
    assert np.allclose(load_model(run).sample(4, "F", seed=0)[0], fresh, atol=1e-6)
    assert np.abs(vols - fresh).max() < 1e-5  # the NIfTI round trip keeps float32
    # new subjects, not copies: each sample differs from every training volume
    assert min(float(np.abs(v - t).mean()) for v in vols for t in real) > 0


def test_dit_through_the_interface(gen_prep, gen_cfg, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"description": "test", "grid_shape": [16, 16, 16], "axis": 2,
                                      "space": "pixel", "num_layers": 1, "num_attention_heads": 2,
                                      "attention_head_dim": 16, "patch_size": 8, "learn_sigma": False}))
    run = fit(gen_prep, gen_cfg("dit", generator="dit", preset=str(preset), batch_size=4))
    assert read_generator(run) == "dit"
    (run / "generator.json").unlink()  # runs written before generator.json are dit runs
    assert read_generator(run) == "dit"
    out = sample(run, 2, tmp_path / "syn", steps=2, progress=False)
    mask = np.load(run / "mask.npy")
    check_cohort(out, 2, mask.shape, mask)
