"""The ``ddpm3d`` generator's network: a class-conditional 3D diffusion UNet on whole volumes.

MONAI's ``DiffusionModelUNet(spatial_dims=3)`` (the network of MONAI Generative Models, Pinaya et al.
2023; the UNet of Ho et al. 2020 / Dhariwal & Nichol 2021 in 3D), as used by the method's predecessor's
3D DDPM. Class conditioning through MONAI's ``num_class_embeds`` (a learned embedding added to the
timestep embedding), with one extra id for the null class of classifier-free guidance.

:class:`UNet3D` adapts it to the network contract of :mod:`neurodit.diffusion`
(``model(x, timestep=t, class_labels=y)``, x (B, 1, D, H, W)) and gives it diffusers-like
``save_pretrained`` / ``from_pretrained`` on a folder holding ``config.json`` + ``model.safetensors``
(no pickles). Attention blocks need ``einops`` (not a dependency of monai, absent from our venv): the
default has none, and its middle block is two residual blocks (``mid_attention: false``) instead of
MONAI's residual-attention-residual block, which MONAI builds unconditionally.
Measured (docs/NOTES.md): channels (16, 32, 64), 1 res block, no attention: 1.75M parameters,
~5.5 s per training step at 32^3, batch 8, on 2 AVX2 cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodit.errors import NeuroditError
from neurodit.io import read_json, write_json

WEIGHTS = "model.safetensors"


@dataclass
class UNet3DConfig:
    """Architecture of the 3D UNet (saved as ``preset.json`` / ``model/config.json`` of a ddpm3d run).

    ``channels``: feature channels per resolution level (each level after the first halves every
    side, so the grid's sides must be divisible by 2^(levels-1)); ``attention_levels``: one bool per
    level (True needs ``einops``), empty = none; ``norm_num_groups`` must divide every channel count.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    num_res_blocks: int = 1
    attention_levels: list[bool] = field(default_factory=list)
    norm_num_groups: int = 8
    num_head_channels: int = 8
    mid_attention: bool = False  # MONAI's attention in the middle block (needs einops)

    def __post_init__(self) -> None:
        self.channels = [int(c) for c in self.channels]
        self.attention_levels = [bool(a) for a in self.attention_levels] or [False] * len(self.channels)
        if not self.channels or any(c < 1 for c in self.channels) or self.num_res_blocks < 1:
            raise NeuroditError(f"unet: channels and num_res_blocks must be positive, got "
                                f"{self.channels}, {self.num_res_blocks}")
        if len(self.attention_levels) != len(self.channels):
            raise NeuroditError(f"unet: attention_levels needs one entry per level ({len(self.channels)}), "
                                f"got {self.attention_levels}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise NeuroditError(f"unet: norm_num_groups {self.norm_num_groups} must divide every channel "
                                f"count {self.channels}")
        if any(self.attention_levels) or self.mid_attention:
            try:
                import einops  # noqa: F401
            except ImportError as exc:
                raise NeuroditError("unet: attention_levels / mid_attention need the einops package "
                                    "(pip install einops), or set them all to false") from exc

    @property
    def divisor(self) -> int:
        """Every grid side must be a multiple of this (2 per downsampling level)."""
        return 2 ** (len(self.channels) - 1)

    def check_grid(self, shape: tuple[int, ...], where: str | Path | None = None) -> None:
        bad = [s for s in shape if int(s) % self.divisor]
        if bad:
            raise NeuroditError(f"grid {'x'.join(map(str, shape))}: every side must be a multiple of "
                                f"{self.divisor} for a {len(self.channels)}-level UNet (prepare with "
                                f"--shape, e.g. 32 32 32)", where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ResidualMidBlock(torch.nn.Module):
    """MONAI's ``AttnMidBlock`` without its attention: resnet -> resnet (same call signature)."""

    def __init__(self, spatial_dims: int, in_channels: int, temb_channels: int, norm_num_groups: int,
                 norm_eps: float, **_: Any):
        super().__init__()
        from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock

        def block() -> torch.nn.Module:
            return DiffusionUNetResnetBlock(spatial_dims=spatial_dims, in_channels=in_channels,
                                            out_channels=in_channels, temb_channels=temb_channels,
                                            norm_num_groups=norm_num_groups, norm_eps=norm_eps)

        self.resnet_1, self.resnet_2 = block(), block()

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                context: torch.Tensor | None = None) -> torch.Tensor:
        return self.resnet_2(self.resnet_1(hidden_states, temb), temb)


class UNet3D(torch.nn.Module):
    """``DiffusionModelUNet(spatial_dims=3)`` behind the ``neurodit.diffusion`` network contract.

    ``num_classes`` real classes; id ``num_classes`` is the null class (classifier-free guidance).
    """

    def __init__(self, cfg: UNet3DConfig, num_classes: int, in_channels: int = 1):
        super().__init__()
        import contextlib
        from unittest import mock

        from monai.networks.nets import DiffusionModelUNet, diffusion_model_unet

        self.cfg, self.num_classes, self.in_channels = cfg, int(num_classes), int(in_channels)
        # MONAI always puts attention in the middle block; without mid_attention it is built as
        # two residual blocks (the patch is scoped to this constructor call)
        ctx = (contextlib.nullcontext() if cfg.mid_attention
               else mock.patch.object(diffusion_model_unet, "get_mid_block", _ResidualMidBlock))
        with ctx:
            self.net = DiffusionModelUNet(
                spatial_dims=3, in_channels=in_channels, out_channels=in_channels,
                num_res_blocks=cfg.num_res_blocks, channels=tuple(cfg.channels),
                attention_levels=tuple(cfg.attention_levels), norm_num_groups=cfg.norm_num_groups,
                num_head_channels=cfg.num_head_channels, num_class_embeds=self.num_classes + 1)

    @property
    def config(self) -> dict[str, Any]:
        return {"unet": self.cfg.to_dict(), "num_classes": self.num_classes, "in_channels": self.in_channels}

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """x (B, C, D, H, W), timestep (B,) (int DDPM steps or float flow times x T), class ids (B,)
        -> prediction (B, C, D, H, W)."""
        return self.net(x, timesteps=timestep, class_labels=class_labels)

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        """``config.json`` + ``model.safetensors`` in ``folder`` (same call as diffusers models)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", self.config)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(folder / WEIGHTS))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> UNet3D:
        """The model saved by :meth:`save_pretrained` (safetensors only; shapes checked by torch)."""
        from safetensors.torch import load_file

        from neurodit.config import from_dict

        folder = Path(folder)
        meta = read_json(folder / "config.json")
        try:
            model = cls(from_dict(UNet3DConfig, meta["unet"], "unet"), int(meta["num_classes"]),
                        int(meta.get("in_channels", 1)))
        except (KeyError, TypeError) as exc:
            raise NeuroditError(f"missing or bad key {exc}", folder / "config.json") from exc
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS)))
        except (OSError, RuntimeError) as exc:
            raise NeuroditError(f"cannot load the UNet weights: {str(exc).splitlines()[0]}",
                                folder / WEIGHTS) from exc
        return model


__all__ = ["UNet3D", "UNet3DConfig"]
