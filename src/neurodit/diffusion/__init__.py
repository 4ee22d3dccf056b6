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
- :mod:`~neurodit.diffusion.precision`: ``mixed_precision_for`` / ``autocast_dtype`` (which
  precision a device gets).
- :mod:`~neurodit.diffusion.transport`: ``Diffusion`` / ``create_diffusion(cfg)``, the one object a
  generator's training and sampling code hold.

The network contract is small so that other generators (a 3D diffusion UNet, a flow-matching model)
reuse every loop: ``model(x, timestep=t, class_labels=y)`` with ``x`` (B, C, *spatial), ``t`` (B,)
int64 and ``y`` (B,) int64, returning a tensor or an object with ``.sample`` whose first C channels
are the prediction (see :func:`~neurodit.diffusion.objective.predict`).
"""

from neurodit.diffusion.objective import diffusion_loss, loss_weight, predict, training_target
from neurodit.diffusion.precision import MIXED_PRECISION, autocast_dtype, mixed_precision_for
from neurodit.diffusion.sampling import SAMPLERS, guided_sample, make_sampler
from neurodit.diffusion.schedule import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    DiffusionConfig,
    make_noise_scheduler,
    snr,
)
from neurodit.diffusion.transport import Diffusion, create_diffusion

__all__ = [
    "BETA_SCHEDULES", "MIXED_PRECISION", "PREDICTION_TYPES", "SAMPLERS", "Diffusion", "DiffusionConfig",
    "autocast_dtype", "create_diffusion", "diffusion_loss", "guided_sample", "loss_weight",
    "make_noise_scheduler", "make_sampler", "mixed_precision_for", "predict", "snr", "training_target",
]
