"""The small 3D CNN shared by the downstream classifier, the C2ST CNN view and the judge's own encoder.

One network, three uses (each trained by :func:`neurodit.models.fit.fit_network`):

- ``neurodit.downstream.nets.build_classifier("small")``: ``SmallCNN(n_outputs=2)``, class logits;
- ``neurodit.metrics.c2st`` (CNN view): ``SmallCNN(n_outputs=1)``, one real-vs-synthetic logit;
- ``neurodit.metrics.encoder.EncoderNet``: ``SmallCNN(n_outputs=3 + 2 r^3, last=dim)``; its pooled
  features :meth:`SmallCNN.embed` are the encoder's (B, dim) features, the head serves training only.

Input ``(B, 1, D, H, W)`` volumes in model range [-1, 1], every side >= :data:`MIN_SIDE` voxels.
"""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import Convolution
from torch import nn

# Smallest side (voxels) the network accepts: four stride-2 blocks, 16 -> 1 voxel.
MIN_SIDE = 16
# Largest side the network works at: bigger volumes are average-pooled by an integer factor first
# (:func:`input_pool`), so a 2 mm grid (99x117x95) costs the convolutions of a 6 mm one (33x39x32, the
# demo's scale): 27x fewer FLOPs (issue 19: the judge at native resolution; at 4 mm, pooled 2x, `evaluate`
# of 40 + 40 + 40 volumes took 71 s on 2 AVX2 cores, 19 s of it the encoder). Volumes of up to 48 a side
# (the demo's 32^3) are unchanged; fine texture stays the texture view's (full resolution).
WORK_SIDE = 48


def input_pool(shape: tuple[int, ...]) -> int:
    """The average-pooling factor that brings a volume of ``shape`` (D, H, W) to at most :data:`WORK_SIDE`
    voxels a side (1: unchanged)."""
    return max(1, math.ceil(max(shape) / WORK_SIDE))


class SmallCNN(nn.Module):
    """Small 3D CNN for CPU runs (after the ~290k-parameter 64^3 CNN of the paper authors' group).

    Four stride-2 MONAI ``Convolution`` blocks (Conv3d -> InstanceNorm -> PReLU) and one stride-1 block,
    global average pooling, a linear head: ~240k parameters with the defaults. At 32^3 one training
    step costs ~0.9 ms per volume on 2 idle CPU cores (fp32, batch 32).

    Args:
        in_channels: input channels (1 for an MD map).
        n_outputs: outputs of the linear head (class logits, or the encoder's training targets).
        channels: output channels of the stride-2 blocks; one further stride-1 block widens the last
            stage to ``last`` channels where the volume is smallest, so parameters are cheap in FLOPs.
        last: channels of the final stride-1 block, the width of :meth:`embed`.
        in_pool: average-pool the input by this factor first (:func:`input_pool`; 1 = none).
    """

    def __init__(self, in_channels: int = 1, n_outputs: int = 2,
                 channels: tuple[int, ...] = (8, 16, 32, 64), last: int = 96, in_pool: int = 1):
        super().__init__()
        self.in_pool = int(in_pool)
        # no parameters: the weights (and state_dict keys) are those of the unpooled network on pooled inputs
        self.pool_in = nn.AvgPool3d(self.in_pool, ceil_mode=True) if self.in_pool > 1 else nn.Identity()
        blocks: list[nn.Module] = []
        c = in_channels
        for i, out in enumerate(channels):
            # (B, c, S, S, S) -> (B, out, S/2, S/2, S/2). InstanceNorm on the first three blocks only: the
            # fourth outputs S/16 voxels a side (1 at 16^3), where instance statistics are undefined.
            norm = "INSTANCE" if i < 3 else None
            blocks.append(Convolution(3, c, out, strides=2, kernel_size=3, act="PRELU", norm=norm))
            c = out
        # (B, c, s, s, s) -> (B, last, s, s, s); s = S/16 (2 at 32^3)
        blocks.append(Convolution(3, c, last, strides=1, kernel_size=3, act="PRELU", norm=None))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)  # (B, last, s, s, s) -> (B, last, 1, 1, 1)
        self.head = nn.Linear(last, n_outputs)  # (B, last) -> (B, n_outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, D, H, W) -> (B, last): the globally pooled last stage."""
        return self.pool(self.features(self.pool_in(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, n_outputs)
