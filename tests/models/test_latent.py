"""LatentCodec: gray mosaic <-> SD-VAE-style latents with a tiny AutoencoderKL."""

from __future__ import annotations

import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.models import LatentCodec, load_vae, make_tiny_vae
from neurodit.models.latent import vae_downsample


def test_round_trip_shapes_range_and_determinism():
    vae = make_tiny_vae(seed=0)
    assert vae_downsample(vae) == 8
    codec = LatentCodec(vae, scale=0.18215, batch_size=2)
    x = torch.rand(3, 1, 32, 48) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (3, 4, 4, 6) and z.dtype == torch.float32
    assert torch.equal(z, codec.encode(x))  # posterior mean: cached latents are reproducible
    y = codec.decode(z)
    assert y.shape == (3, 1, 32, 48)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    # chunking does not change results (up to float reassociation in batched convs)
    one = LatentCodec(vae, batch_size=1)
    assert torch.allclose(one.encode(x), z, atol=1e-5)
    assert torch.allclose(one.decode(z), y, atol=1e-5)


def test_scale_and_gray_replication():
    vae = make_tiny_vae(seed=1)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    z1 = LatentCodec(vae, scale=1.0).encode(x)
    z2 = LatentCodec(vae, scale=0.5).encode(x)
    assert torch.allclose(z2, 0.5 * z1, atol=1e-6)
    direct = vae.encode(x.repeat(1, 3, 1, 1)).latent_dist.mean
    assert torch.allclose(z1, direct, atol=1e-6)
    rgb = vae.decode(z1).sample
    assert torch.allclose(LatentCodec(vae, scale=1.0).decode(z1),
                          rgb.mean(1, keepdim=True).clamp(-1, 1), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    zs = LatentCodec(vae, scale=1.0, sample=True).encode(x, generator=g)
    assert zs.shape == z1.shape and not torch.equal(zs, z1)


def test_bad_inputs():
    codec = LatentCodec(make_tiny_vae())
    with pytest.raises(NeuroditError, match="4 maps do not fit the VAE's 3 image channel"):
        codec.encode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(NeuroditError, match=r"\(B, C, H, W\)"):
        codec.encode(torch.zeros(3, 16, 16))
    with pytest.raises(NeuroditError, match="multiple of the VAE downsampling 8"):
        codec.encode(torch.zeros(1, 1, 12, 16))
    with pytest.raises(NeuroditError, match=r"\(B, 4, h, w\)"):
        codec.decode(torch.zeros(1, 3, 2, 2))


def test_load_vae_folder_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vae = make_tiny_vae(seed=2)
    vae.save_pretrained(tmp_path / "vae")
    back = load_vae(str(tmp_path / "vae"))
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    assert torch.equal(LatentCodec(back).encode(x), LatentCodec(vae).encode(x))
    with pytest.raises(NeuroditError, match="no config.json"):
        load_vae(str(tmp_path))
    with pytest.raises(NeuroditError, match="not in the local Hugging Face cache"):
        load_vae("neurodit-tests/no-such-vae")
