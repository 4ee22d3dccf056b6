"""Fixtures for the generator tests: a tiny phantom camcan cohort prepared on a 16^3 grid."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRID = (16, 16, 16)


@pytest.fixture(scope="session")
def gen_prep(tmp_path_factory):
    """Phantom camcan cohort (12 subjects, 6 F / 6 M) prepared on a 16^3 grid."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare

    root = tmp_path_factory.mktemp("gen")
    cohort = make_phantom_cohort("camcan", 12, root / "cohort", seed=3, voxel_size=6.0)
    return prepare(cohort, root / "prep", shape=GRID)


@pytest.fixture
def gen_cfg(gen_prep, tmp_path):
    """Factory: a TrainConfig for ``generator`` writing tmp_path/name; ddpm3d gets a 2-level 8/16-channel
    UNet (0.1M parameters, ~0.1 s per step at batch 2 on one thread)."""
    from neurodit.train import resolve_train_config

    def make(name="run", generator="ddpm3d", **over):
        flags = dict(prep_dir=str(gen_prep), out=str(tmp_path / name), generator=generator, max_steps=2,
                     batch_size=2, preview_per_class=1, preview_steps=2, checkpoint_every=0, log_every=1,
                     lr=1e-3, warmup_steps=1, num_threads=1)
        flags.update(over)
        overrides = {"unet": {"channels": [8, 16]}} if generator == "ddpm3d" else None
        return resolve_train_config(None, overrides, **flags)

    return make
