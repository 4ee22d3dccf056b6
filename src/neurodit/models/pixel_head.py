"""A light pixel-level head on a patch-level DiT: per-pixel detail that a large-patch token cannot output.

At patch 32 the DiT's output layer maps each token's width-256 state to 1,024 pixels: every output lies in
a fixed 256-dimensional subspace per token (docs/RECIPES.md part 2). A clean-data predictor
(``diffusion.prediction: x``; Li & He 2025, JiT) then gets the anatomy right but cannot pass on the
voxel-level texture that the noisy input already shows at small t, so its samples come out smooth.
PixelDiT (Yu et al. 2025, arXiv 2511.20645) adds a pixel-level pathway to a patch-level DiT for the same
reason. Ours is the lightest such pathway: a few 3x3 convolutions on [noisy input, the DiT's prediction],
modulated by the timestep (FiLM: Perez et al. 2018), whose output is added to the DiT's prediction. The last
convolution starts at zero, so a fresh head leaves the DiT's output unchanged. It works on the mosaic (the
model's input space), where neighbouring pixels of a tile are neighbouring voxels of a slice.

:class:`HeadedDiT` wraps diffusers' ``DiTTransformer2DModel`` with the head; it saves as the DiT's own folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``) plus ``pixel_head.json`` and
``pixel_head.safetensors`` (:func:`load_headed`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurodit.errors import NeuroditError
from neurodit.io import read_json, write_json

HEAD_CONFIG = "pixel_head.json"
HEAD_WEIGHTS = "pixel_head.safetensors"
T_FEATURES = 32  # sinusoidal features of the timestep (half sin, half cos)


class PixelHead(nn.Module):
    """``depth`` 3x3 convolutions of ``width`` channels: (x_t, coarse) (B, C, H, W) each, timestep (B,) in
    [0, 1000] -> coarse + correction (B, C, H, W)."""

    def __init__(self, channels: int, width: int = 8, depth: int = 3):
        super().__init__()
        if width < 1 or depth < 2:
            raise NeuroditError(f"pixel head: width must be >= 1 and depth >= 2, got {width} and {depth}")
        self.channels, self.width, self.depth = int(channels), int(width), int(depth)
        self.inp = nn.Conv2d(2 * channels, width, 3, padding=1)
        self.mid = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 2))
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        # FiLM of every hidden layer from the timestep: (B, T_FEATURES) -> (B, 2 * width * (depth - 1))
        self.film = nn.Linear(T_FEATURES, 2 * width * (depth - 1))
        self.register_buffer("freq", torch.exp(-math.log(1000.0) * torch.arange(T_FEATURES // 2) / (T_FEATURES // 2)),
                             persistent=False)
        with torch.no_grad():  # a fresh head adds nothing: the DiT's prediction passes unchanged
            self.out.weight.zero_()
            self.out.bias.zero_()
            self.film.weight.mul_(0.1)
            self.film.bias.zero_()

    @property
    def config(self) -> dict[str, int]:
        return {"channels": self.channels, "width": self.width, "depth": self.depth}

    def forward(self, xt: torch.Tensor, coarse: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        arg = timestep.float().view(-1, 1) * self.freq  # (B, T_FEATURES / 2)
        film = self.film(torch.cat([arg.sin(), arg.cos()], dim=1).to(coarse.dtype))  # (B, 2 W (depth - 1))
        scales = film.view(film.shape[0], self.depth - 1, 2, self.width, 1, 1).unbind(1)  # depth-1 x (B,2,W,1,1)
        h = self.inp(torch.cat([xt.to(coarse.dtype), coarse], dim=1))  # (B, W, H, W)
        for i, conv in enumerate([*self.mid, None]):
            h = nn.functional.silu(h * (1 + scales[i][:, 0]) + scales[i][:, 1])
            h = conv(h) if conv is not None else h
        return coarse + self.out(h)


class HeadedDiT(nn.Module):
    """A diffusers DiT whose prediction (its first ``head.channels`` output channels) is refined by a
    :class:`PixelHead` that also sees the noisy input. Called like the DiT (``x, timestep=, class_labels=``);
    returns a tensor. ``config`` and ``transformer_blocks`` are the DiT's, so the label-dropout and
    attention helpers of :mod:`neurodit.models.dit` apply unchanged."""

    def __init__(self, dit: nn.Module, head: PixelHead):
        super().__init__()
        self.dit, self.head = dit, head

    @property
    def config(self):
        return self.dit.config

    @property
    def transformer_blocks(self):
        return self.dit.transformer_blocks

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        out = self.dit(x, timestep=timestep, class_labels=class_labels)
        out = out.sample if hasattr(out, "sample") else out  # (B, C or 2C, H, W)
        c = self.head.channels
        fine = self.head(x[:, :c], out[:, :c], timestep)
        return torch.cat([fine, out[:, c:]], dim=1) if out.shape[1] > c else fine

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        """The DiT's diffusers folder plus the head's config and safetensors weights."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.dit.save_pretrained(folder, safe_serialization=True)
        write_json(folder / HEAD_CONFIG, self.head.config)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(folder / HEAD_WEIGHTS))


def has_head(folder: str | Path) -> bool:
    return (Path(folder) / HEAD_CONFIG).is_file()


def load_headed(dit: nn.Module, folder: str | Path) -> HeadedDiT:
    """Wrap the loaded ``dit`` with the head saved in ``folder`` by :meth:`HeadedDiT.save_pretrained`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta: dict[str, Any] = read_json(folder / HEAD_CONFIG)
    try:
        head = PixelHead(int(meta["channels"]), int(meta["width"]), int(meta["depth"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise NeuroditError(f"missing or bad key {exc}", folder / HEAD_CONFIG) from exc
    try:
        head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
    except (OSError, RuntimeError) as exc:
        raise NeuroditError(f"cannot load the pixel head: {str(exc).splitlines()[0]}", folder / HEAD_WEIGHTS) from exc
    return HeadedDiT(dit, head)


__all__ = ["HEAD_CONFIG", "HEAD_WEIGHTS", "HeadedDiT", "PixelHead", "has_head", "load_headed"]
