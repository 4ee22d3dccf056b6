"""``neurodit pretrain`` (issue 23): natural-image crops on a preset's grid, a short pretraining run, its model
loaded through ``--init`` and finetuned. A 2-layer pixel DiT on a 16^3 grid (4x4 mosaic of 16^2 tiles = 64^2):
seconds on 2 CPU cores."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurodit.cli import app  # noqa: E402
from neurodit.errors import NeuroditError  # noqa: E402
from neurodit.pretrain import NaturalImage, load_images, make_crops, pretrain, read_images  # noqa: E402
from neurodit.tiling import make_spec, mosaic_to_volume, volume_to_mosaic  # noqa: E402

GRID = (16, 16, 16)


@pytest.fixture(scope="module")
def preset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "pre-pixel.yaml"
    path.write_text(yaml.safe_dump({"grid_shape": list(GRID), "num_layers": 2, "num_attention_heads": 2,
                                    "attention_head_dim": 16, "patch_size": 8}))
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two seeded photos-to-be (smooth gradient + texture) and a licence note."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:90, 0:120]
    for i in range(2):
        img = 120 + 80 * np.sin(xx / (7 + 5 * i)) * np.cos(yy / 11) + rng.normal(0, 10, xx.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"photo{i}.png")
    (folder / "LICENSE.txt").write_text("CC0 1.0, made by the test\n")
    return folder


FAST = {"batch_size": 4, "preview_per_class": 0, "log_every": 1, "warmup_steps": 1, "lr": 1e-3,
        "num_threads": 1}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, image_folder, preset_file):
    out = tmp_path_factory.mktemp("pre") / "run"
    return pretrain(image_folder, str(preset_file), out, max_steps=4, n_crops=8, seed=1, overrides=FAST)


def test_crops_are_mosaics_in_model_range_and_untile_exactly():
    spec = make_spec(GRID, axis=2)
    photo = NaturalImage("p", "test", np.linspace(0, 1, 50 * 70, dtype=np.float32).reshape(50, 70), "CC0")
    faces = NaturalImage("s", "test", np.random.default_rng(0).random((5, 9, 9)).astype(np.float32), "CC0")
    crops, which = make_crops([photo, faces], spec, 12, seed=3)
    assert crops.shape == (12, 64, 64) and crops.dtype == np.float32
    assert crops.min() >= -1.0 and crops.max() <= 1.0
    assert set(which.tolist()) == {0, 1}
    # a gradient photo stays monotone along x (up to the flip); a stack changes at tile borders only
    row = crops[np.flatnonzero(which == 0)[0], 32]
    assert np.all(np.diff(row) >= -1e-4) or np.all(np.diff(row) <= 1e-4)
    # the adapter's tiling gives back every pixel of the 16 slices (this grid has no empty cells)
    back = volume_to_mosaic(mosaic_to_volume(crops, spec), spec)
    np.testing.assert_array_equal(back, crops)
    # same seed, same crops
    np.testing.assert_array_equal(make_crops([photo, faces], spec, 12, seed=3)[0], crops)


def test_shipped_image_sets_load_offline_with_a_licence_each():
    sk = load_images("sklearn")
    assert [i.name for i in sk] == ["china.jpg", "flower.jpg"]
    assert all("CC BY 2.0" in i.licence and i.colour and i.pixels.shape[2] == 3 and i.view(False).ndim == 2
               for i in sk)
    ski = {i.name: i for i in load_images("skimage")}
    assert len(ski) >= 15 and ski["lfw_subset"].pixels.shape == (200, 25, 25)
    assert "CC0" in ski["camera"].licence
    assert all(0.0 <= float(i.pixels.min()) and float(i.pixels.max()) <= 1.0 for i in ski.values())


def test_pretraining_on_a_handful_of_crops_runs(pretrained, image_folder):
    assert (pretrained / "model" / "config.json").is_file()
    info = read_images(pretrained)
    assert [im["name"] for im in info["images"]] == ["photo0.png", "photo1.png"]
    assert sum(im["crops"] for im in info["images"]) == 8
    assert all(im["licence"].startswith("CC0 1.0") for im in info["images"])
    assert info["crops_dir"] is None and not list(image_folder.glob("*.partial"))
    loss = np.loadtxt(pretrained / "loss.csv", delimiter=",", skiprows=1)
    assert loss.shape == (4, 3) and np.isfinite(loss[:, 1]).all()
    cfg = yaml.safe_load((pretrained / "train_config.yaml").read_text())
    assert cfg["label"] == "dataset" and cfg["standardize"] in ("none", "pixel")


def test_output_loads_through_init_with_our_class_table(pretrained, preset_file):
    from diffusers import DiTTransformer2DModel

    from neurodit.models import load_init, load_preset

    src = DiTTransformer2DModel.from_pretrained(pretrained / "model")
    assert src.config.num_embeds_ada_norm == 1  # one class (the dataset) + the null row
    model, summary = load_init(pretrained / "model", load_preset(str(preset_file)), 4, return_summary=True)
    table = model.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.weight
    assert table.shape == (5, 32)
    theirs, ours = src.state_dict(), model.state_dict()
    same = [k for k in ours if "class_embedder" not in k and "pos_embed.pos_embed" not in k]
    assert len(same) > 20 and all(torch.equal(ours[k], theirs[k]) for k in same)
    assert summary["adapted"]  # the class table was rebuilt, and said so


def test_finetune_starts_from_the_pretrained_weights_and_trains(pretrained, preset_file, tmp_path):
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare
    from neurodit.train import resolve_train_config, train_diffusion
    from neurodit.train.loop import build_model, plan_run

    cohort = make_phantom_cohort("camcan", 8, tmp_path / "cohort", seed=2, voxel_size=8.0)
    prep = prepare(cohort, tmp_path / "prep", shape=GRID)

    def cfg(name, init):
        return resolve_train_config(None, dict(FAST), prep_dir=str(prep), out=str(tmp_path / name),
                                    preset=str(preset_file), max_steps=3, init=init, seed=0)

    torch.manual_seed(0)
    fresh = build_model(plan_run(cfg("fresh", None))).state_dict()
    torch.manual_seed(0)
    started = build_model(plan_run(cfg("ft", str(pretrained / "model")))).state_dict()
    key = "transformer_blocks.0.attn1.to_q.weight"
    assert not torch.allclose(fresh[key], started[key], atol=1e-3)
    run = train_diffusion(cfg("ft", str(pretrained / "model")))
    from diffusers import DiTTransformer2DModel

    tuned = DiTTransformer2DModel.from_pretrained(run / "model").state_dict()
    moved = float((tuned[key] - started[key]).abs().max())
    assert 1e-6 < moved < 1.0  # it trained, from the pretrained start (3 steps at lr 1e-3 move little)
    assert np.isfinite(np.loadtxt(run / "loss.csv", delimiter=",", skiprows=1)[:, 1]).all()


def test_cli_refuses_an_unknown_image_source(tmp_path, preset_file):
    res = CliRunner().invoke(app, ["pretrain", "--images", str(tmp_path / "nope"), "--preset", str(preset_file),
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "nope" in res.output and "--images" in res.output
    assert not (tmp_path / "run").exists()


def test_latent_preset_pretrains_on_vae_latents_of_the_rgb_crops(tmp_path, image_folder, preset_file):
    """A latent preset (tiny AutoencoderKL): the RGB crops reach the DiT as 4-channel latents, the model loads
    back and initialises a one-map latent DiT unchanged."""
    from diffusers import DiTTransformer2DModel
    from safetensors.torch import load_file

    from neurodit.models import make_tiny_vae

    preset = tmp_path / "pre-latent.yaml"
    preset.write_text(yaml.safe_dump({"grid_shape": list(GRID), "space": "latent", "vae": None, "latent_scale": 0.5,
                                      "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16,
                                      "patch_size": 2, "learn_sigma": True}))
    run = pretrain(image_folder, str(preset), tmp_path / "run", max_steps=2, n_crops=6, overrides=FAST,
                   vae=make_tiny_vae())
    assert load_file(str(run / "cache" / "inputs.safetensors"))["inputs"].shape == (6, 4, 8, 8)
    model = DiTTransformer2DModel.from_pretrained(run / "model")
    assert model.config.in_channels == 4 and model.config.out_channels == 8
    # RGB through the VAE: the crops were three maps (red, green, blue) filling the VAE's colour channels
    assert read_images(run)["colour"].startswith("RGB") and json.loads((run / "prepare.json").read_text())["maps"] == [
        "red", "green", "blue"]
    from neurodit.models import load_init, load_preset

    one_map = load_init(run / "model", load_preset(str(preset)), 3)  # a one-map (MD) latent finetune's DiT
    assert one_map.config.in_channels == 4 and torch.equal(one_map.pos_embed.proj.weight,
                                                           model.pos_embed.proj.weight)
    with pytest.raises(NeuroditError, match="RGB crops need a latent preset"):
        pretrain(image_folder, str(preset_file), tmp_path / "r2", rgb=True)


def test_rgb_crops_are_the_grey_crops_colour_twins():
    spec = make_spec(GRID, axis=2)
    rng = np.random.default_rng(1)
    grey = NaturalImage("g", "test", rng.random((40, 50)).astype(np.float32), "CC0")
    colour = NaturalImage("c", "test", rng.random((40, 50, 3)).astype(np.float32), "CC0", colour=True)
    g, wg = make_crops([grey, colour], spec, 8, seed=2)
    c, wc = make_crops([grey, colour], spec, 8, seed=2, rgb=True)
    assert c.shape == (8, 3, 64, 64) and np.array_equal(wg, wc)
    for i in np.flatnonzero(wg == 0):  # a grey image: three equal channels, each the grey crop
        assert all(np.allclose(c[i, k], g[i], atol=1e-6) for k in range(3))
    i = int(np.flatnonzero(wg == 1)[0])  # a colour image: the channels differ, the grey crop is their luma's
    luma = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), c[i], axes=1)  # (M, M)
    assert not np.allclose(c[i, 0], c[i, 1]) and np.corrcoef(g[i].ravel(), luma.ravel())[0, 1] > 0.99
