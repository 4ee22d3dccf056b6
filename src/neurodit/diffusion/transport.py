"""``Diffusion``: one object holding the noise process, its loss and its samplers.

Like SiT's ``create_transport`` (Ma et al. 2024), this is the only thing a generator's training and
sampling code need from the process; the network stays a plain ``nn.Module`` (contract in
:mod:`neurodit.diffusion`). A flow-matching process would be a second class with the same three
methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler

from neurodit.diffusion.objective import diffusion_loss
from neurodit.diffusion.sampling import guided_sample, make_sampler
from neurodit.diffusion.schedule import DiffusionConfig, make_noise_scheduler


@dataclass
class Diffusion:
    """The DDPM process of ``cfg``: ``loss`` for training, ``sampler``/``sample`` for generation."""

    cfg: DiffusionConfig
    scheduler: DDPMScheduler = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scheduler = make_noise_scheduler(self.cfg)

    def loss(self, model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar training loss on clean inputs ``x0`` (B, C, ...) with class ids ``labels`` (B,)."""
        return diffusion_loss(model, x0, labels, self.scheduler, self.cfg, generator=generator)

    def sampler(self, kind: str = "ddim"):
        """A fresh diffusers sampler (``ddim``, ``dpm`` or ``ddpm``) on the training betas."""
        return make_sampler(kind, self.scheduler)

    def sample(self, model: torch.nn.Module, labels: torch.Tensor, null_class: int, shape: tuple[int, ...],
               *, kind: str = "ddim", steps: int = 25, guidance: float = 2.0,
               generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
               progress: Callable | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free-guided samples (B, *shape) in the model range (see ``guided_sample``)."""
        return guided_sample(model, self.sampler(kind), labels, null_class, shape, steps=steps,
                             guidance=guidance, generator=generator, autocast_dtype=autocast_dtype,
                             progress=progress, init=init)


def create_diffusion(cfg: DiffusionConfig | None = None) -> Diffusion:
    """The one factory: ``Diffusion`` for ``cfg`` (default ``DiffusionConfig()``)."""
    return Diffusion(cfg if cfg is not None else DiffusionConfig())
