"""3D CNN classifiers for the downstream experiment and the head surgery used for transfer.

Architectures (all take ``(B, 1, D, H, W)`` volumes in model range [-1, 1], return ``(B, n_classes)`` logits):

- ``densenet121``: MONAI ``DenseNet121(spatial_dims=3)`` (Huang et al. 2017, "Densely connected
  convolutional networks"), 11.2M parameters; needs every side >= 32 voxels.
- ``resnet10``: MONAI ``resnet10`` (Hara et al. 2018, 3D ResNets for video / MedicalNet), one input channel.
- ``small``: the CPU preset, :class:`neurodit.models.small_cnn.SmallCNN` (~240k parameters), the small
  3D CNN the judge's C2ST view and encoder use too.

The *head* of every network is its last ``nn.Linear``; everything before it is the *backbone*.
:func:`transfer_backbone` copies every backbone tensor from a source model (shape-checked, as in
nanoGPT's ``from_pretrained``) and leaves a freshly initialised head, which is how the AD-vs-CN models
are initialised from the sex classifiers.
"""

from __future__ import annotations

import torch
from torch import nn

from neurodit.errors import NeuroditError
from neurodit.models import small_cnn

ARCHS = ("small", "densenet121", "resnet10")

# Minimum side (voxels) each architecture accepts: its total downsampling factor.
MIN_SIDE = {"small": small_cnn.MIN_SIDE, "densenet121": 32, "resnet10": 16}


def build_classifier(arch: str, n_classes: int = 2, in_channels: int = 1) -> nn.Module:
    """Build a 3D classifier by name (one of :data:`ARCHS`)."""
    if arch == "small":
        return small_cnn.SmallCNN(in_channels=in_channels, n_outputs=n_classes)
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
