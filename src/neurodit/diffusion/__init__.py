"""The generative process, kept apart from the network (a "transport" layer, as in SiT).

Ma et al. 2024 (SiT, "Exploring Flow and Diffusion-based Generative Models with Scalable
Interpolant Transformers") keep DiT's network untouched and put everything about the process in one
swappable layer. Here that layer is this package; ``train``, ``sample`` and ``bench`` import it and
nothing of each other:

- :mod:`~neurodit.diffusion.schedule`: ``DiffusionConfig`` (saved in every run) and the DDPM noise
  schedule (``make_noise_scheduler``, ``snr``).
- :mod:`~neurodit.diffusion.objective`: training targets (epsilon, v, x0), Min-SNR loss weights,
  ``diffusion_loss``.
- :mod:`~neurodit.diffusion.sampling`: the sampler factory (``make_sampler``: DDIM, DPM-Solver++,
  DDPM) and the classifier-free-guidance loop (``guided_sample``).
- :mod:`~neurodit.diffusion.flow`: rectified flow / flow matching (velocity target, logit-normal
  timesteps, guided Euler / Heun sampling), ``objective: flow``.
- :mod:`~neurodit.diffusion.precision`: ``mixed_precision_for`` / ``autocast_dtype`` (which
  precision a device gets).
- :mod:`~neurodit.diffusion.transport`: ``Diffusion`` / ``FlowMatching`` / ``create_diffusion(cfg)``,
  the one object a generator's training and sampling code hold (``.loss``, ``.sample``).

The network contract is small so that other generators (a 3D diffusion UNet, a flow-matching model)
reuse every loop: ``model(x, timestep=t, class_labels=y)`` with ``x`` (B, C, *spatial), ``t`` (B,)
int64 and ``y`` (B,) int64, returning a tensor or an object with ``.sample`` whose first C channels
are the prediction (see :func:`~neurodit.diffusion.objective.predict`).
"""

from neurodit.diffusion.flow import FLOW_SAMPLERS, flow_loss, flow_sample, logit_normal_t
from neurodit.diffusion.objective import diffusion_loss, loss_weight, predict, training_target
from neurodit.diffusion.precision import MIXED_PRECISION, autocast_dtype, mixed_precision_for
from neurodit.diffusion.sampling import DDPM_SAMPLERS, SAMPLERS, guided_sample, make_sampler
from neurodit.diffusion.schedule import (
    BETA_SCHEDULES,
    OBJECTIVES,
    PREDICTION_TYPES,
    DiffusionConfig,
    make_noise_scheduler,
    snr,
)
from neurodit.diffusion.transport import Diffusion, FlowMatching, create_diffusion, default_sampler

__all__ = [
    "BETA_SCHEDULES", "DDPM_SAMPLERS", "FLOW_SAMPLERS", "MIXED_PRECISION", "OBJECTIVES", "PREDICTION_TYPES",
    "SAMPLERS", "Diffusion", "DiffusionConfig", "FlowMatching", "autocast_dtype", "create_diffusion",
    "default_sampler", "diffusion_loss", "flow_loss", "flow_sample", "guided_sample", "logit_normal_t",
    "loss_weight",
    "make_noise_scheduler", "make_sampler", "mixed_precision_for", "predict", "snr", "training_target",
]
