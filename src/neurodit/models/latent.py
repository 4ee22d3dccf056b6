"""Latent space through the Stable Diffusion VAE (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models"), as DiT-XL/2 was trained (Peebles & Xie 2023, Sec. 3.1).

MD mosaics are grayscale in the model range [-1, 1]; the SD VAE wants RGB in [-1, 1]. We replicate the
gray channel to RGB on the way in and average the three decoded channels on the way out. Several maps of
one subject (issue 22: MD, FA, ...; at most as many as the VAE's image channels) fill the RGB channels
instead: image channel k carries map ``k % C`` (MD, FA -> R = MD, G = FA, B = MD), and each decoded map is
the mean of the image channels that carry it; one map is the grey copy above. Latents are multiplied by
``scale`` (0.18215 for the SD VAE) so they have about unit variance.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from neurodit.errors import NeuroditError


def vae_downsample(vae: AutoencoderKL) -> int:
    """Spatial downsampling factor of an ``AutoencoderKL``: 2^(number of encoder blocks - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class LatentCodec:
    """Mosaic <-> VAE latent, for latent-space presets.

    Args:
        vae: a diffusers ``AutoencoderKL`` (the SD VAE ``stabilityai/sd-vae-ft-ema``/``-mse``, or
            ``make_tiny_vae()`` in tests). Frozen: put in eval mode, gradients off.
        scale: latent scale factor (0.18215 for the SD VAE).
        sample: encode to a draw of the posterior (needs a ``generator`` for reproducibility) instead of
            its mean. Default: the mean, so cached latents are deterministic.
        batch_size: encode/decode in chunks of this many images (VAE activations are large).
    """

    def __init__(self, vae: AutoencoderKL, scale: float = 0.18215, *, sample: bool = False,
                 batch_size: int = 8):
        if scale <= 0:
            raise NeuroditError(f"LatentCodec: scale must be > 0, got {scale}")
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(scale)
        self.sample = bool(sample)
        self.batch_size = int(batch_size)
        self.downsample = vae_downsample(vae)
        self.latent_channels = int(vae.config.latent_channels)
        self.image_channels = int(vae.config.in_channels)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def carriers(self, maps: int) -> list[list[int]]:
        """For ``maps`` maps: the image channels carrying each map (channel k carries map k % maps)."""
        if not 1 <= maps <= self.image_channels:
            raise NeuroditError(f"LatentCodec: {maps} maps do not fit the VAE's {self.image_channels} image "
                                "channel(s)")
        return [list(range(c, self.image_channels, maps)) for c in range(maps)]

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, H, W) mosaics of C maps in [-1, 1] -> (B, 4, H/8, W/8) scaled latents (float32, VAE device)."""
        if x.ndim != 4:
            raise NeuroditError(f"LatentCodec.encode: expected (B, C, H, W) mosaics, got {tuple(x.shape)}")
        order = [k % x.shape[1] for k in range(self.image_channels)]
        self.carriers(x.shape[1])  # checks C
        if x.shape[-1] % self.downsample or x.shape[-2] % self.downsample:
            raise NeuroditError(f"LatentCodec.encode: mosaic {tuple(x.shape[-2:])} is not a multiple of "
                                f"the VAE downsampling {self.downsample}")
        out = []
        for chunk in x.split(self.batch_size):
            # (b, C, H, W) -> (b, 3, H, W): the maps fill RGB (one map: grey replicated), as the SD VAE was
            # trained on RGB
            rgb = chunk.to(self.device, self.dtype)[:, order]
            dist = self.vae.encode(rgb).latent_dist
            z = dist.sample(generator) if self.sample else dist.mean  # (b, 4, H/8, W/8)
            out.append(z.float() * self.scale)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, maps: int = 1) -> torch.Tensor:
        """(B, 4, h, w) scaled latents -> (B, ``maps``, 8h, 8w) mosaics in [-1, 1] (float32, VAE device)."""
        carry = self.carriers(maps)
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise NeuroditError(f"LatentCodec.decode: expected (B, {self.latent_channels}, h, w) latents, "
                                f"got {tuple(z.shape)}")
        out = []
        for chunk in z.split(self.batch_size):
            rgb = self.vae.decode(chunk.to(self.device, self.dtype) / self.scale).sample  # (b, 3, 8h, 8w)
            # RGB -> maps: each the mean of its carrier channels (grey: all three), clamped to the model range
            rgb = rgb.float()
            out.append(torch.stack([rgb[:, ks].mean(dim=1) for ks in carry], dim=1).clamp(-1.0, 1.0))
        return torch.cat(out)


def load_vae(source: str, subfolder: str | None = None, *, torch_dtype: torch.dtype | None = None
             ) -> AutoencoderKL:
    """Load an ``AutoencoderKL`` from a hub id (offline, from the HF cache) or a local folder.

    ``source`` e.g. ``stabilityai/sd-vae-ft-ema`` or ``facebook/DiT-XL-2-256`` with ``subfolder="vae"``.
    """
    from neurodit.models.pretrained import from_pretrained_checked

    vae = from_pretrained_checked(AutoencoderKL, source, subfolder, torch_dtype=torch_dtype)
    return vae.eval().requires_grad_(False)


def make_tiny_vae(seed: int = 0, latent_channels: int = 4) -> AutoencoderKL:
    """A small random ``AutoencoderKL`` with the SD VAE's interface (3 -> 4 channels, 8x downsampling).

    Four encoder blocks (three halvings: /8) of 8-16 channels; for tests and the latent-path smoke run.
    Not a useful autoencoder until trained: only shapes and plumbing are realistic.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        vae = AutoencoderKL(
            in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=latent_channels,
            norm_num_groups=8, sample_size=64,
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return vae.eval().requires_grad_(False)
