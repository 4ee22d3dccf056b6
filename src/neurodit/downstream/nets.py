"""3D CNN classifiers for the downstream experiment and the head surgery used for transfer.

Architectures (all take ``(B, 1, D, H, W)`` volumes in model range [-1, 1], return ``(B, n_classes)`` logits):

- ``densenet121``: MONAI ``DenseNet121(spatial_dims=3)`` (Huang et al. 2017, "Densely connected
  convolutional networks"), 11.2M parameters; needs every side >= 32 voxels.
- ``resnet10``: MONAI ``resnet10`` (Hara et al. 2018, 3D ResNets for video / MedicalNet), one input channel.
- ``small``: the CPU preset, :class:`SmallCNN` (~240k parameters): four stride-2 MONAI ``Convolution``
  blocks (Conv3d -> InstanceNorm -> PReLU) and one stride-1 block, global average pooling, a linear head.
  At 32^3 one training step costs ~0.9 ms per volume on 2 idle CPU cores (fp32, batch 32).

The *head* of every network is its last ``nn.Linear``; everything before it is the *backbone*.
:func:`transfer_backbone` copies every backbone tensor from a source model (shape-checked, as in
nanoGPT's ``from_pretrained``) and leaves a freshly initialised head, which is how the AD-vs-CN models
are initialised from the sex classifiers.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from neurodit.errors import NeuroditError

ARCHS = ("small", "densenet121", "resnet10")

# Minimum side (voxels) each architecture accepts: its total downsampling factor.
MIN_SIDE = {"small": 16, "densenet121": 32, "resnet10": 16}


class SmallCNN(nn.Module):
    """Small 3D CNN for CPU runs (after the ~290k-parameter 64^3 CNN of the paper authors' group).

    Args:
        in_channels: input channels (1 for an MD map).
        n_classes: output logits.
        channels: output channels of the stride-2 blocks; one further stride-1 block widens the last
            stage to ``last`` channels where the volume is smallest, so parameters are cheap in FLOPs.
        last: channels of the final stride-1 block.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2,
                 channels: tuple[int, ...] = (8, 16, 32, 64), last: int = 96):
        super().__init__()
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
        self.head = nn.Linear(last, n_classes)  # (B, last) -> (B, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)  # (B, last)
        return self.head(x)


def build_classifier(arch: str, n_classes: int = 2, in_channels: int = 1) -> nn.Module:
    """Build a 3D classifier by name (one of :data:`ARCHS`)."""
    if arch == "small":
        return SmallCNN(in_channels=in_channels, n_classes=n_classes)
    if arch == "densenet121":
        from monai.networks.nets import DenseNet121

        return DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=n_classes)
    if arch == "resnet10":
        from monai.networks.nets import resnet10

        return resnet10(spatial_dims=3, n_input_channels=in_channels, num_classes=n_classes)
    raise NeuroditError(f"unknown architecture '{arch}' (known: {', '.join(ARCHS)})")


def head_name(model: nn.Module) -> str:
    """Dotted name of the classification head: the last ``nn.Linear`` in the module tree."""
    names = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    if not names:
        raise NeuroditError(f"{type(model).__name__} has no linear head")
    return names[-1]


def split_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone tensors, head tensors) of ``model.state_dict()`` (parameters and buffers)."""
    prefix = head_name(model) + "."
    state = model.state_dict()
    head = {k: v for k, v in state.items() if k.startswith(prefix)}
    backbone = {k: v for k, v in state.items() if not k.startswith(prefix)}
    return backbone, head


def transfer_backbone(target: nn.Module, source_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every backbone tensor of ``source_state`` into ``target``; keep ``target``'s own head.

    The head of ``target`` (its last linear layer, freshly initialised, possibly another class count)
    is left untouched. Every backbone key must exist on both sides with the same shape, else
    NeuroditError (a source model of another architecture or input size cannot initialise this one).
    Returns the copied keys.
    """
    backbone, _ = split_state(target)
    missing = sorted(set(backbone) - set(source_state))
    if missing:
        raise NeuroditError(f"source weights lack backbone tensor(s) {', '.join(missing[:3])} "
                            f"({len(missing)} missing): another architecture?")
    new = {}
    for key, tensor in backbone.items():
        src = source_state[key]
        if tuple(src.shape) != tuple(tensor.shape):
            raise NeuroditError(f"source tensor {key} has shape {tuple(src.shape)}, "
                                f"target expects {tuple(tensor.shape)}")
        new[key] = src.detach().clone()
    # strict=False: the head keys keep their fresh initialisation
    target.load_state_dict(new, strict=False)
    return sorted(new)


def freeze_backbone(model: nn.Module) -> int:
    """Stop gradients to every parameter but the head's; returns the number of trainable parameters."""
    prefix = head_name(model) + "."
    trainable = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefix))
        trainable += p.numel() if p.requires_grad else 0
    return trainable


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
