"""``Diffusion``: one object holding the noise process, its loss and its samplers.

Like SiT's ``create_transport`` (Ma et al. 2024), this is the only thing a generator's training and
sampling code need from the process; the network stays a plain ``nn.Module`` (contract in
:mod:`neurodit.diffusion`). A flow-matching process would be a second class with the same three
methods: :class:`FlowMatching` (rectified flow, ``neurodit.diffusion.flow``), chosen by
``cfg.objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler

from neurodit.defaults import SAMPLING
from neurodit.diffusion.flow import FLOW_SAMPLERS, flow_loss, flow_sample
from neurodit.diffusion.objective import diffusion_loss
from neurodit.diffusion.sampling import DDPM_SAMPLERS, guided_sample, make_sampler
from neurodit.diffusion.schedule import DiffusionConfig, make_noise_scheduler
from neurodit.errors import NeuroditError


def _check_kind(kind: str, allowed: tuple[str, ...], objective: str) -> str:
    if kind not in allowed:
        raise NeuroditError(f"a {objective} run samples with one of {', '.join(allowed)}, got {kind!r}")
    return kind


@dataclass
class Diffusion:
    """The DDPM process of ``cfg``: ``loss`` for training, ``sampler``/``sample`` for generation."""

    cfg: DiffusionConfig
    scheduler: DDPMScheduler = field(init=False, repr=False)
    samplers = DDPM_SAMPLERS  # the first is the default

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
               *, kind: str = "ddim", steps: int = SAMPLING.steps, guidance: float = SAMPLING.guidance,
               generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
               progress: Callable | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free-guided samples (B, *shape) in the model range (see ``guided_sample``)."""
        kind = _check_kind(kind or self.samplers[0], self.samplers, "ddpm")
        return guided_sample(model, self.sampler(kind), labels, null_class, shape, steps=steps,
                             guidance=guidance, generator=generator, autocast_dtype=autocast_dtype,
                             progress=progress, init=init)


@dataclass
class FlowMatching:
    """The rectified-flow process of ``cfg`` (``objective: flow``), with ``Diffusion``'s methods."""

    cfg: DiffusionConfig
    samplers = FLOW_SAMPLERS  # the first is the default

    def loss(self, model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar velocity-matching loss on clean inputs ``x0`` (B, C, ...) with class ids (B,)."""
        return flow_loss(model, x0, labels, self.cfg, generator=generator)

    def sample(self, model: torch.nn.Module, labels: torch.Tensor, null_class: int, shape: tuple[int, ...],
               *, kind: str = "euler", steps: int = SAMPLING.steps, guidance: float = SAMPLING.guidance,
               generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
               progress: Callable | None = None, init: torch.Tensor | None = None,
               shift: float = SAMPLING.flow_shift) -> torch.Tensor:
        """Guided Euler / Heun / AB2 / DPM-Solver++ samples (B, *shape) in the model range (``flow_sample``)."""
        kind = _check_kind(kind or self.samplers[0], self.samplers, "flow")
        return flow_sample(model, labels, null_class, shape, self.cfg, kind=kind, steps=steps,
                           guidance=guidance, generator=generator, autocast_dtype=autocast_dtype,
                           progress=progress, init=init, shift=shift)


def create_diffusion(cfg: DiffusionConfig | None = None) -> Diffusion | FlowMatching:
    """The one factory: ``Diffusion`` (objective ddpm) or ``FlowMatching`` (objective flow) for ``cfg``
    (default ``DiffusionConfig()``)."""
    cfg = cfg if cfg is not None else DiffusionConfig()
    return FlowMatching(cfg) if cfg.objective == "flow" else Diffusion(cfg)


def default_sampler(cfg: DiffusionConfig) -> str:
    """The sampler a run of ``cfg`` uses when none is named: ddim (ddpm) or euler (flow)."""
    return (FLOW_SAMPLERS if cfg.objective == "flow" else DDPM_SAMPLERS)[0]
