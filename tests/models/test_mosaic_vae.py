"""neurodit.models.mosaic_vae: a small AutoencoderKL trained on a cohort's own mosaics."""

from __future__ import annotations

import json

import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.models.mosaic_vae import MosaicVAEConfig, prepared_mosaics, train_mosaic_vae


def test_mosaic_vae_learns_saves_and_loads_as_a_latent_codec(tmp_path):
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare
    from neurodit.models import LatentCodec, load_vae

    cohort = make_phantom_cohort("camcan", 6, tmp_path / "cohort", seed=2, voxel_size=8.0)
    prep = prepare(cohort, tmp_path / "prep", shape=(16, 16, 16))
    mosaics = prepared_mosaics(prep)  # (6, 1, 64, 64): 16 slices of 16^2 in a 4x4 grid
    assert tuple(mosaics.shape) == (6, 1, 64, 64)
    cfg = MosaicVAEConfig(channels=(8, 8, 16, 16), steps=60, batch_size=4, lr=2e-3, num_threads=1)
    out = train_mosaic_vae(mosaics, tmp_path / "vae", cfg)
    info = json.loads((out / "vae_train.json").read_text())
    first, last = info["losses"][0]["l1"], info["losses"][-1]["l1"]
    assert last < 0.6 * first  # it learns: L1 of the reconstruction falls
    assert info["reconstruction_rmse"] < 0.5
    codec = LatentCodec(load_vae(str(out)), scale=1.0)
    z = codec.encode(mosaics)
    assert tuple(z.shape) == (6, 4, 8, 8)  # /8, 4 channels: the SD VAE's contract
    rec = codec.decode(z)
    assert tuple(rec.shape) == (6, 1, 64, 64)
    assert float(((rec - mosaics) ** 2).mean().sqrt()) == pytest.approx(info["reconstruction_rmse"], abs=1e-4)
    with pytest.raises(NeuroditError, match="exists"):
        train_mosaic_vae(mosaics, out, cfg)  # an existing folder is never overwritten by default


def test_mosaic_vae_refuses_a_size_it_cannot_halve():
    with pytest.raises(NeuroditError, match="multiple of /8"):
        train_mosaic_vae(torch.zeros(2, 1, 20, 20), "unused", MosaicVAEConfig(steps=1))
