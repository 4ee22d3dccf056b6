"""A small ``AutoencoderKL`` trained on a cohort's own mosaics, for latent presets at patch 2.

Why: DiT-XL/2 runs at patch 2 on SD-VAE latents (2 x 2 x 4 = 16 numbers per token at width 1,152), so no
token has to carry more numbers than it is wide. Our tiny DiT at patch 32 on pixels squeezes 1,024 pixels
into a width-256 token (docs/NOTES.md). A VAE trained on the mosaics moves the DiT onto latents the way
DiT does (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"); the SD VAE
itself cannot be downloaded here. Loss: L1 reconstruction plus a small KL term (1e-6, as for the SD VAE),
without its perceptual and adversarial terms (no pretrained perceptual network offline), so the decoder
reconstructs smooth images; docs/RECIPES.md measures what that costs.

``train_mosaic_vae(mosaics, out, cfg)`` trains on (N, 1, S, S) mosaics in the model range (a run's input
cache, or ``neurodit.tiling.volume_to_mosaic`` of prepared volumes) and writes a diffusers folder
(``config.json`` + safetensors) that ``neurodit.models.load_vae(out)`` and a preset's ``vae:`` key read. Four encoder blocks: /8, 4 latent
channels, the SD VAE's shape contract (``LatentCodec``), on 1-channel mosaics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, write_json


@dataclass
class MosaicVAEConfig:
    """Size and training budget of the mosaic autoencoder (defaults: 0.98M parameters)."""

    channels: tuple[int, ...] = (16, 32, 64, 64)  # one block per entry: len - 1 halvings (/8)
    latent_channels: int = 4  # latent presets' DiT input (neurodit.models.presets.LATENT_CHANNELS)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0
    num_threads: int = 0  # 0: torch's default


def build_mosaic_vae(cfg: MosaicVAEConfig, mosaic_size: int):
    """A fresh ``AutoencoderKL`` for (B, 1, S, S) mosaics."""
    from diffusers import AutoencoderKL

    n = len(cfg.channels)
    return AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.channels),
                         layers_per_block=1, latent_channels=cfg.latent_channels,
                         norm_num_groups=min(16, min(cfg.channels)), sample_size=mosaic_size)


def train_mosaic_vae(mosaics: torch.Tensor, out: str | Path, cfg: MosaicVAEConfig | None = None,
                     overwrite: bool = False) -> Path:
    """Train on ``mosaics`` (N, 1, S, S) in the model range and save the VAE to ``out`` (written in a
    temporary folder, renamed into place). Returns ``out``; ``out/vae_train.json`` holds the losses.
    """
    cfg = cfg or MosaicVAEConfig()
    if mosaics.ndim != 4 or mosaics.shape[1] != 1 or mosaics.shape[-1] != mosaics.shape[-2]:
        raise NeuroditError(f"mosaic VAE: expected (N, 1, S, S) mosaics, got {tuple(mosaics.shape)}")
    down = 2 ** (len(cfg.channels) - 1)
    if mosaics.shape[-1] % down:
        raise NeuroditError(f"mosaic VAE: mosaic size {mosaics.shape[-1]} is not a multiple of /{down}")
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            vae = build_mosaic_vae(cfg, int(mosaics.shape[-1]))
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        x_all = mosaics.float()
        rows, t0 = [], time.time()
        vae.train()
        for step in range(cfg.steps):
            idx = torch.randint(0, x_all.shape[0], (cfg.batch_size,), generator=gen)
            x = x_all[idx]  # (B, 1, S, S)
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
            rec = vae.decode(z).sample
            l1 = (rec - x).abs().mean()
            kl = post.kl().mean() / x[0].numel()
            loss = l1 + cfg.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == cfg.steps - 1:
                rows.append({"step": step + 1, "l1": float(l1.detach()), "kl": float(kl.detach())})
        seconds = time.time() - t0
        vae.eval()
        with torch.no_grad():  # reconstruction of the whole set from the posterior means
            rec = torch.cat([vae.decode(vae.encode(c).latent_dist.mean).sample for c in x_all.split(16)])
            rmse = float(((rec.clamp(-1, 1) - x_all) ** 2).mean().sqrt())
    finally:
        torch.set_num_threads(threads)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        write_json(Path(tmp) / "vae_train.json", {"config": cfg.__dict__, "seconds": round(seconds, 1),
                                                   "losses": rows, "reconstruction_rmse": rmse,
                                                   "n": int(x_all.shape[0]),
                                                   "parameters": sum(p.numel() for p in vae.parameters())})
    return Path(out)


def prepared_mosaics(prep_dir: str | Path, axis: int = 2) -> torch.Tensor:
    """The prepared volumes of ``prep_dir`` as (N, 1, S, S) mosaics (``neurodit.tiling``, fill -1)."""
    from neurodit.data.prepare import load_prepared
    from neurodit.tiling import make_spec, volume_to_mosaic

    prep = load_prepared(prep_dir)
    prep.require_one_map("the mosaic VAE")
    spec = make_spec(prep.grid.shape, axis=axis, fill=-1.0, affine=prep.grid.affine)
    vols = np.asarray(prep.volumes, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(volume_to_mosaic(vols, spec)))[:, None]
