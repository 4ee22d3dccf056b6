"""Fixtures for the training tests: a tiny phantom camcan cohort prepared on a 16^3 grid and small
DiT presets (seconds per run on 2 CPU cores)."""

from __future__ import annotations

import os

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRID = (16, 16, 16)  # 16 axial slices -> 4x4 mosaic of 16^2 tiles = 64^2 pixels


@pytest.fixture(scope="session")
def phantom_prep(tmp_path_factory):
    """Phantom camcan cohort (40 subjects, 20 F / 20 M) prepared on a 16^3 grid (~12 mm voxels)."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare

    root = tmp_path_factory.mktemp("phantom")
    cohort = make_phantom_cohort("camcan", 40, root / "cohort", seed=3, voxel_size=6.0)
    return prepare(cohort, root / "prep", shape=GRID)


def write_preset(path, **kw):
    """A pixel-space preset on GRID: patch 8 -> 8^2 = 64 tokens, width 64 (2 heads x 32), 2 layers."""
    base = {"description": "test", "grid_shape": list(GRID), "axis": 2, "space": "pixel", "num_layers": 2,
            "num_attention_heads": 2, "attention_head_dim": 32, "patch_size": 8, "learn_sigma": False}
    base.update(kw)
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.fixture(scope="session")
def preset_file(tmp_path_factory):
    return write_preset(tmp_path_factory.mktemp("presets") / "test-pixel.yaml")


@pytest.fixture
def fast_cfg(phantom_prep, preset_file, tmp_path):
    """Factory for a TrainConfig that trains ``preset_file`` for a few steps into tmp_path/name."""
    from neurodit.train import resolve_train_config

    def make(name="run", **over):
        flags = dict(prep_dir=str(phantom_prep), out=str(tmp_path / name), preset=str(preset_file),
                     max_steps=2, batch_size=4, preview_per_class=1, preview_steps=2, checkpoint_every=0,
                     log_every=1, lr=1e-3, warmup_steps=1)
        flags.update(over)
        return resolve_train_config(None, None, **flags)

    return make
