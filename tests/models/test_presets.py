"""Preset registry: shipped YAMLs, derived sizes, parameter counts, unknown keys rejected."""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import DiTTransformer2DModel

from neurodit.errors import NeuroditError
from neurodit.generators.base import REGISTRY
from neurodit.models import ModelPreset, list_presets, load_preset
from neurodit.models.presets import mosaic_side

SHIPPED = ("tiny", "tiny-p32", "S-8", "B-4", "XL-2-256", "XL-2-512", "XL-2-2mm")


def test_registry_lists_the_shipped_presets():
    from neurodit.config import CONFIG_DIR

    # every YAML in configs/presets is one registered preset, and every one is sized below
    assert sorted(list_presets()) == sorted(SHIPPED) == sorted(f.stem for f in (CONFIG_DIR / "presets").glob("*.yaml"))
    assert set(SHIPPED) == {row[0] for row in PRESET_SIZES}


def test_tiny_preset_sizes():
    p = load_preset("tiny")
    assert p.name == "tiny" and p.space == "pixel" and p.grid_shape == (32, 32, 32)
    assert p.mosaic_size == 192 and p.sample_size == 192  # 6x6 tiles of 32^2
    assert (p.in_channels, p.out_channels, p.width, p.patch_size) == (1, 1, 256, 8)
    assert p.num_tokens == 24 * 24
    assert p.num_params(2) == 8_059_712  # ~8M, the CPU size


# name, prepared grid, DiT input side, tokens, in / out channels, mosaic side
PRESET_SIZES = [
    ("tiny", (32, 32, 32), 192, 24 * 24, 1, 1, 192),
    ("tiny-p32", (32, 32, 32), 192, 6 * 6, 1, 1, 192),  # the demo's model: one token per 32^2 slice
    ("S-8", (40, 48, 40), 336, 42 * 42, 1, 1, 336),
    ("B-4", (55, 64, 55), 64, 16 * 16, 4, 4, 512),
    ("XL-2-256", (36, 40, 36), 30, 15 * 15, 4, 8, 240),
    ("XL-2-512", (55, 64, 55), 64, 32 * 32, 4, 8, 512),
    ("XL-2-2mm", (96, 112, 96), 140, 70 * 70, 4, 8, 1120),  # 10x10 tiles of 112^2, latent 140^2
]


@pytest.mark.parametrize("name,grid,sample,tokens,cin,cout,mosaic", PRESET_SIZES)
def test_preset_sizes(name, grid, sample, tokens, cin, cout, mosaic):
    p = load_preset(name)
    assert p.name == name and p.grid_shape == grid and p.mosaic_size == mosaic
    assert (p.sample_size, p.num_tokens, p.in_channels, p.out_channels) == (sample, tokens, cin, cout)
    assert p.mosaic_size == mosaic_side(grid, p.axis)
    if p.space == "latent":
        assert p.vae and p.latent_scale == pytest.approx(0.18215) and p.latent_downsample == 8
        assert p.mosaic_size == 8 * p.sample_size
    if name.startswith("XL"):
        assert (p.num_layers, p.num_attention_heads, p.attention_head_dim, p.patch_size) == (28, 16, 72, 2)
        assert p.learn_sigma and p.pretrained and p.pretrained.startswith("facebook/DiT-XL-2-")


@pytest.mark.parametrize("name", SHIPPED)
def test_param_count_arithmetic_matches_diffusers(name):
    # meta device: XL is never allocated on CPU
    p = load_preset(name)
    from neurodit.generators.inputs import with_pixel_head

    with init_empty_weights():
        model = with_pixel_head(DiTTransformer2DModel(**p.dit_kwargs(3)), p)  # + the preset's pixel head
    assert p.num_params(3) == sum(t.numel() for t in model.parameters())
    assert next(model.parameters()).device == torch.device("meta")


def test_mosaic_rule():
    assert mosaic_side((32, 32, 32), 2) == 192
    assert mosaic_side((55, 64, 55), 2) == 512  # 8x8 tiles of 64 (in-plane 55x64 padded square)
    assert mosaic_side((96, 112, 96), 2) == 1120
    assert mosaic_side((10, 20, 30), 0) == 4 * 30


def test_unknown_key_rejected(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("grid_shape: [32, 32, 32]\nnum_layers: 2\nnum_attention_heads: 2\n"
                   "attention_head_dim: 8\npatch_size: 8\nnum_heads: 3\n")
    with pytest.raises(NeuroditError, match=r"mine\.yaml.*unknown config key.*num_heads"):
        load_preset(bad)


def test_yaml_path_name_defaults_to_stem_and_overrides(tmp_path):
    f = tmp_path / "small.yaml"
    f.write_text("grid_shape: [16, 16, 16]\nnum_layers: 2\nnum_attention_heads: 2\n"
                 "attention_head_dim: 8\npatch_size: 4\n")
    p = load_preset(f, overrides={"patch_size": 8})
    assert p.name == "small" and p.patch_size == 8 and p.mosaic_size == 64


def test_bad_presets_are_errors(tmp_path):
    with pytest.raises(NeuroditError, match="unknown model preset 'huge'.*tiny"):
        load_preset("huge")
    with pytest.raises(NeuroditError, match="not a multiple of 16"):  # 6x6 tiles of 20 = 120
        ModelPreset(name="x", grid_shape=(20, 20, 36), num_layers=1, num_attention_heads=1,
                    attention_head_dim=8, patch_size=2, space="latent")
    with pytest.raises(NeuroditError, match="space must be"):
        load_preset("tiny", overrides={"space": "voxel"})
    missing = tmp_path / "m.yaml"
    missing.write_text("grid_shape: [16, 16, 16]\n")
    with pytest.raises(NeuroditError, match=r"m\.yaml.*num_layers"):
        load_preset(missing)


def test_to_dict_round_trip():
    p = load_preset("XL-2-512")
    d = p.to_dict()
    assert d["sample_size"] == 64 and d["out_channels"] == 8 and d["grid_shape"] == [55, 64, 55]
    assert ModelPreset.from_dict(d) == p
    d["sample_size"] = 32
    with pytest.raises(NeuroditError, match="sample_size"):
        ModelPreset.from_dict(d)


def test_presets_command_lists_sizes_and_prepare_shape():
    from typer.testing import CliRunner

    from neurodit.cli import app

    res = CliRunner().invoke(app, ["presets", "tiny", "XL-2-256"])
    assert res.exit_code == 0, res.output
    assert "mosaic  192^2" in res.output and "8.1M" in res.output
    assert "--shape 36 40 36" in res.output and "facebook/DiT-XL-2-256" in res.output
    bad = CliRunner().invoke(app, ["presets", "nope"])
    assert bad.exit_code == 2 and "unknown model preset 'nope'" in bad.output


def test_presets_command_shows_the_model_train_builds_for_the_demo():
    """One truth per preset: the demo's model is a preset of its own (patch 32), no train config
    overrides a preset's architecture, and `neurodit presets` prints that very model."""
    from typer.testing import CliRunner

    from neurodit.cli import app
    from neurodit.config import read_yaml
    from neurodit.demo import load_demo_config
    from neurodit.train.config import TRAIN_CONFIG_DIR, resolve_train_config

    for quick in (False, True):
        demo = load_demo_config(quick=quick)
        cfg = resolve_train_config(None, dict(demo.train_overrides), prep_dir="p", out="o", preset=demo.preset)
        built = load_preset(cfg.preset, cfg.preset_overrides or None)  # what train_diffusion builds
        assert built == load_preset(demo.preset)
        assert (built.name, built.patch_size, built.num_tokens, built.mosaic_size) == ("tiny-p32", 32, 36, 192)
    assert resolve_train_config(None, None, prep_dir="p", out="o").preset == "tiny-p32"  # no --preset
    for f in TRAIN_CONFIG_DIR.glob("*.yaml"):
        assert not read_yaml(f).get("preset_overrides"), f
        if f.stem != "default" and f.stem not in REGISTRY:  # a generator's own recipe (ddpm3d) has no DiT preset
            assert load_preset(f.stem).name == f.stem  # every DiT recipe has its preset
    res = CliRunner().invoke(app, ["presets", "tiny-p32"])
    assert res.exit_code == 0, res.output
    assert "36 tokens" in res.output and "6x256 /32" in res.output and "mosaic  192^2" in res.output
    assert round(built.num_params(2) / 1e6, 1) == 8.6 and "8.6M" in res.output
