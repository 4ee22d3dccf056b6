"""`neurodit train`: run layout, grid check, resume, finetuning through --init, latent path."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DiTTransformer2DModel
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.errors import NeuroditError
from neurodit.train import train_diffusion


def test_run_layout_and_model_loads(fast_cfg):
    run = train_diffusion(fast_cfg("run", max_steps=3))
    for name in ("model/config.json", "model/diffusion_pytorch_model.safetensors", "train_config.yaml",
                 "run.json", "labels.json", "prepare.json", "tiling.json", "loss.csv", "mask.npy",
                 "samples/preview.png", "samples/real.png", "cache/inputs.safetensors"):
        assert (run / name).is_file(), name
    labels = json.loads((run / "labels.json").read_text())
    assert labels["classes"] == ["F", "M"] and labels["null_class"] == 2 and labels["counts"] == [20, 20]
    model = DiTTransformer2DModel.from_pretrained(run / "model")
    assert model.config.num_embeds_ada_norm == 2 and model.config.sample_size == 64
    loss = pd.read_csv(run / "loss.csv")
    assert list(loss["step"]) == [1, 2, 3] and np.isfinite(loss["loss"]).all()
    info = json.loads((run / "run.json").read_text())
    assert info["steps_trained"] == 3 and info["seed"] == 0 and "torch" in info["versions"]
    # what `neurodit bench` reads: the steps after the first 2 (warm-up), the threads picked at start-up
    steps = info["step_seconds"]
    assert steps["n"] == 1 and 0 < steps["min"] == steps["median"] == steps["max"] and steps["first"] > 0
    choice = info["thread_choice"]
    assert info["threads"] == choice["threads"] >= 1 and choice["picked_by"] in ("timing", "one core")
    cores = len(os.sched_getaffinity(0))
    assert choice["threads"] in (1, cores) and (choice["picked_by"] == "one core" or
                                                set(choice["trial_s"]) == {"1", str(cores)})
    # the precision: timed (bf16 against fp32) where the CPU's torch kernels have bf16, else why not
    prec = info["precision_choice"]
    assert prec["precision"] == info["mixed_precision"] in ("bf16", "no")
    if prec["picked_by"] == "timing":  # bf16 stays unless fp32 is more than 10 % faster
        trial = prec["trial_s"]
        assert set(trial) == {"bf16", "no"}
        if abs(trial["no"] * 1.1 - trial["bf16"]) > 2e-4:  # the recorded medians are rounded to 0.1 ms
            assert (prec["precision"] == "no") == (trial["no"] * 1.1 < trial["bf16"])
    else:
        assert prec["precision"] == "no" or prec["picked_by"] == "config"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000003"]


def test_grid_mismatch_names_prepare_shape(phantom_prep, tmp_path):
    # the tiny preset needs 32^3; the prepared grid is 16^3
    res = CliRunner().invoke(app, ["train", str(phantom_prep), "--out", str(tmp_path / "r"),
                                   "--preset", "tiny", "--max-steps", "1"])
    assert res.exit_code == 2
    assert "--shape 32 32 32" in res.output and "16x16x16" in res.output
    assert not (tmp_path / "r").exists()


def test_resume_continues_step_count_and_matches_uninterrupted(fast_cfg):
    # one precision for both runs: under `auto` each fresh run times its own (run.json precision_choice)
    full = train_diffusion(fast_cfg("full", max_steps=4, mixed_precision="fp32"))
    part = train_diffusion(fast_cfg("part", max_steps=2, checkpoint_every=1, mixed_precision="fp32"))
    # `auto` on resume: no new trial, the checkpoint's precision goes on
    resumed = train_diffusion(fast_cfg("part", max_steps=4, resume=True))
    assert resumed == part
    info = json.loads((part / "run.json").read_text())
    assert info["resumed_from"] == 2 and info["steps_trained"] == 2
    assert info["precision_choice"] == {"precision": "no", "picked_by": "resume: the checkpoint's"}
    assert list(pd.read_csv(part / "loss.csv")["step"]) == [1, 2, 3, 4]
    # per-step seeding + saved optimiser/EMA state: the resumed run equals the uninterrupted one
    a = DiTTransformer2DModel.from_pretrained(full / "model").state_dict()
    b = DiTTransformer2DModel.from_pretrained(part / "model").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    with pytest.raises(NeuroditError, match="label"):
        train_diffusion(fast_cfg("part", max_steps=6, resume=True, label="diagnosis"))


def test_existing_run_needs_resume_or_overwrite(fast_cfg):
    run = train_diffusion(fast_cfg("r", max_steps=1))
    with pytest.raises(NeuroditError, match="--resume"):
        train_diffusion(fast_cfg("r", max_steps=1))
    # a run that died before its first checkpoint (config written, no model) is simply restarted
    (run.parent / "dead").mkdir()
    (run.parent / "dead" / "train_config.yaml").write_text("preset: x\n")
    assert (train_diffusion(fast_cfg("dead", max_steps=1)) / "model" / "config.json").is_file()
    # a foreign non-empty folder is never deleted
    (run.parent / "foreign").mkdir()
    (run.parent / "foreign" / "notes.txt").write_text("keep me")
    with pytest.raises(NeuroditError, match="not a neurodit run"):
        train_diffusion(fast_cfg("foreign", max_steps=1, overwrite=True))
    assert (run.parent / "foreign" / "notes.txt").read_text() == "keep me"


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sb = b.state_dict()
    return max(float((v - sb[k]).abs().max()) for k, v in a.state_dict().items())


@pytest.mark.parametrize("fmt", ["diffusers", "original"])
def test_finetune_from_init(fast_cfg, preset_file, tmp_path, fmt):
    """A pretrained-like DiT (3 classes, random non-zero weights) -> our 2 classes via --init."""
    from neurodit.models import build_dit, export_original_state_dict, load_preset, share_block_embedders

    preset = load_preset(preset_file)
    torch.manual_seed(1)
    src = build_dit(preset, 3)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(0, 0.2)
    share_block_embedders(src)
    if fmt == "diffusers":
        src.save_pretrained(tmp_path / "init")
        init = tmp_path / "init"
    else:
        init = tmp_path / "DiT-test.pt"
        torch.save({"model": export_original_state_dict(src), "ema": export_original_state_dict(src)}, init)
    # lr ~ 0: the finetuned weights must still be the pretrained ones (class table adapted 3 -> 2)
    run = train_diffusion(fast_cfg("ft", init=str(init), lr=1e-12, max_steps=2))
    got = DiTTransformer2DModel.from_pretrained(run / "model")
    assert got.config.num_embeds_ada_norm == 2
    sg, ss = got.state_dict(), src.state_dict()
    shared = [k for k in ss if "class_embedder" not in k]
    assert max(float((sg[k] - ss[k]).abs().max()) for k in shared) < 1e-6
    table = sg["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]
    assert table.shape == (3, 64)
    # the null row (last) is the pretrained null row
    assert torch.allclose(table[-1], ss["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"][-1])
    # a real run with a normal lr moves away from the init
    run2 = train_diffusion(fast_cfg("ft2", init=str(init), lr=1e-3, max_steps=2))
    moved = DiTTransformer2DModel.from_pretrained(run2 / "model")
    assert _max_diff(moved, got) > 1e-4


def test_label_dropout_is_ours_not_diffusers(fast_cfg, monkeypatch):
    """Every block's own dropout is 0 during training; our null-class dropout is applied once per sample."""
    seen = []
    orig = DiTTransformer2DModel.forward

    def spy(self, hidden_states, timestep=None, class_labels=None, **kw):
        seen.append(([float(b.norm1.emb.class_embedder.dropout_prob) for b in self.transformer_blocks],
                     self.training, class_labels.clone()))
        return orig(self, hidden_states, timestep=timestep, class_labels=class_labels, **kw)

    monkeypatch.setattr(DiTTransformer2DModel, "forward", spy)
    # threads and precision fixed: no start-up trials, whose forwards (on a copy) would count here
    train_diffusion(fast_cfg("drop", max_steps=10, batch_size=16, preview_per_class=0, label_dropout=0.25,
                             num_threads=1, mixed_precision="fp32"))
    train_calls = [s for s in seen if s[1]]
    assert len(train_calls) == 10
    assert all(p == [0.0, 0.0] for p, _, _ in train_calls)
    labels = torch.cat([y for _, _, y in train_calls])
    frac_null = float((labels == 2).float().mean())
    assert 0.15 < frac_null < 0.35, frac_null  # 160 draws at p = 0.25: +-3 sd


def test_latent_path_end_to_end(phantom_prep, tmp_path):
    """A latent preset with a tiny AutoencoderKL: cache latents, train, sample, untile to volumes."""
    import nibabel as nib
    import yaml

    from neurodit.data.cohort import read_cohort
    from neurodit.models import make_tiny_vae
    from neurodit.sample import sample_diffusion
    from neurodit.train import resolve_train_config

    # 16^3 grid -> 64^2 mosaic -> tiny VAE (/8) -> 8^2 x 4 latent, patch 2 -> 16 tokens, learned sigma
    preset = tmp_path / "test-latent.yaml"
    preset.write_text(yaml.safe_dump({
        "grid_shape": [16, 16, 16], "space": "latent", "vae": None, "latent_scale": 0.5,
        "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "patch_size": 2,
        "learn_sigma": True}))
    cfg = resolve_train_config(None, None, prep_dir=str(phantom_prep), out=str(tmp_path / "run"),
                               preset=str(preset), max_steps=3, batch_size=4, preview_per_class=1,
                               preview_steps=2, log_every=1)
    vae = make_tiny_vae()
    run = train_diffusion(cfg, vae=vae)
    from safetensors.torch import load_file

    cached = load_file(str(run / "cache" / "inputs.safetensors"))["inputs"]
    assert cached.shape == (40, 4, 8, 8)  # latents computed once, not mosaics
    model = DiTTransformer2DModel.from_pretrained(run / "model")
    assert model.config.in_channels == 4 and model.config.out_channels == 8
    out = sample_diffusion(run, 3, tmp_path / "syn", steps=2, vae=vae, progress=False)
    files = sorted(out.glob("syn-*.nii.gz"))
    assert len(files) == 3
    img = nib.load(files[0])
    assert img.shape == (16, 16, 16)
    assert np.allclose(img.affine, json_grid_affine(run))
    assert len(read_cohort(out)) == 3


def json_grid_affine(run) -> np.ndarray:
    return np.asarray(json.loads((run / "prepare.json").read_text())["grid"]["affine"])


def test_process_settings_are_restored_after_a_run_and_on_error(fast_cfg):
    from neurodit.train.loop import process_settings

    before = torch.get_num_threads()
    torch.set_num_threads(2 if before != 2 else 3)
    try:
        threads = torch.get_num_threads()
        torch.manual_seed(11)
        expected = torch.rand(3)  # what the global stream gives next if train leaves it alone
        torch.manual_seed(11)
        train_diffusion(fast_cfg("threads", max_steps=1, num_threads=1, preview_per_class=0))
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.rand(3), expected)
        with pytest.raises(RuntimeError, match="boom"), process_settings(1):
            assert torch.get_num_threads() == 1
            torch.manual_seed(123)
            raise RuntimeError("boom")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_train_steps_run_one_by_one(fast_cfg):
    """plan_run checks without writing; build_inputs builds the cache once and then reads it."""
    from neurodit.train.loop import build_inputs, build_model, plan_run

    cfg = fast_cfg("steps")
    plan = plan_run(cfg)
    assert not plan.run_dir.exists() and plan.checkpoints == []
    assert plan.inputs.spec.mosaic_shape == (64, 64) and plan.labels.classes == ("F", "M")
    assert np.bincount(plan.class_ids).tolist() == [20, 20]
    inputs = build_inputs(plan, torch.device("cpu"))
    assert plan.inputs.codec is None and tuple(inputs.shape) == (40, 1, 64, 64)
    assert float(inputs.min()) >= -1.0 and float(inputs.max()) <= 1.0
    cache = plan.run_dir / "cache" / "inputs.safetensors"
    stamp = cache.stat().st_mtime_ns
    again = build_inputs(plan, torch.device("cpu"))
    assert torch.equal(again, inputs) and cache.stat().st_mtime_ns == stamp  # read, not rebuilt
    model = build_model(plan)
    out = model(inputs[:2], timestep=torch.tensor([0, 500]), class_labels=torch.tensor([0, 2])).sample
    assert tuple(out.shape) == (2, 1, 64, 64) and float(out.abs().max()) == 0.0  # adaLN-Zero init


def test_demo_recipe_is_standardized_flow_and_its_sampler_follows_a_changed_objective():
    """configs/train/tiny-p32.yaml (the demo recipe, docs/RECIPES.md part 2): rectified flow with t
    shifted to the noise end on per-pixel standardized mosaics, sampled with ab2; switching the
    objective to ddpm without naming a sampler samples with ddim, and a named wrong one is an error."""
    from neurodit.train import resolve_train_config

    cfg = resolve_train_config(None, None, preset="tiny-p32")
    assert (cfg.diffusion.objective, cfg.sampler, cfg.standardize) == ("flow", "ab2", "highpass")
    assert (cfg.diffusion.logit_mean, cfg.diffusion.logit_std, cfg.diffusion.snr_gamma) == (1.0, 1.0, None)
    ddpm = resolve_train_config(None, None, preset="tiny-p32", objective="ddpm")
    assert (ddpm.diffusion.objective, ddpm.sampler) == ("ddpm", "ddim")
    with pytest.raises(NeuroditError, match="sampler must be one of"):
        resolve_train_config(None, {"sampler": "euler"}, preset="tiny-p32", objective="ddpm")


def test_a_pixel_head_x_prediction_run_trains_saves_and_samples(fast_cfg, preset_file, tmp_path):
    """A preset with a pixel head, trained with clean-data prediction: the run's model folder holds the head,
    `TrainedRun` loads it back (weights equal to the EMA export) and `sample` writes finite volumes."""
    import yaml

    from neurodit.models.pixel_head import HeadedDiT, has_head
    from neurodit.runs import TrainedRun
    from neurodit.sample import sample_diffusion

    headed = tmp_path / "head.yaml"  # the fixture's preset with a 4-channel head
    headed.write_text(yaml.safe_dump({**yaml.safe_load(preset_file.read_text()), "pixel_head": 4}))
    run = train_diffusion(fast_cfg("head", preset=str(headed), max_steps=2,
                                   diffusion={"objective": "flow", "prediction": "x"}))
    assert has_head(run / "model")
    loaded = TrainedRun(run).model
    assert isinstance(loaded, HeadedDiT) and loaded.head.width == 4
    assert float(loaded.head.out.weight.abs().sum()) > 0  # trained: no longer the zero start
    out = sample_diffusion(run, 2, tmp_path / "syn", steps=2, progress=False)
    import nibabel as nib

    vols = sorted(out.glob("*.nii.gz"))
    assert len(vols) == 2 and all(np.isfinite(nib.load(v).get_fdata()).all() for v in vols)
