"""The DDPM noise process (Ho et al. 2020): its typed config and the diffusers scheduler behind it.

``DiffusionConfig`` is saved in every run folder (``train_config.yaml``, key ``diffusion``) so that
sampling uses exactly the process the model was trained on. Options: the network target (noise
``epsilon``, velocity ``v_prediction`` after Salimans & Ho 2022, clean image ``sample``), Min-SNR-gamma
loss weights (Hang et al. 2023) and zero-terminal-SNR beta rescaling (Lin et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler

from neurodit.errors import NeuroditError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
OBJECTIVES = ("ddpm", "flow")  # flow: rectified flow / flow matching (neurodit.diffusion.flow)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
class DiffusionConfig:
    """Noise process used in training; saved in the run folder so sampling uses the same one.

    ``objective`` ``ddpm`` (the fields below up to ``snr_floor``) or ``flow`` (rectified flow with a
    velocity target and logit-normal timesteps, ``logit_mean``/``logit_std``; ``prediction_type``,
    ``beta_schedule`` and the Min-SNR fields do not apply to it).
    """

    objective: str = "ddpm"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    rescale_zero_terminal_snr: bool = False
    snr_gamma: float | None = None  # Min-SNR-gamma weight; None = plain MSE on the target
    # x0-prediction only: lower bound of the Min-SNR weight, so high-noise steps (which decide the
    # global layout: which slice sits in which mosaic cell) keep the plain x0 weight 1 while
    # low-noise steps (detail, subject-to-subject spread) are up-weighted to gamma.
    snr_floor: float | None = None
    logit_mean: float = 0.0  # flow: t = sigmoid(logit_mean + logit_std * N(0, 1)) (SD3: 0, 1)
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise NeuroditError(f"diffusion.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "flow" and self.snr_gamma is not None:
            raise NeuroditError("diffusion.snr_gamma (Min-SNR) applies to objective ddpm only; "
                                "set it to null for flow")
        if not self.logit_std > 0:
            raise NeuroditError(f"diffusion.logit_std must be > 0, got {self.logit_std}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise NeuroditError(f"diffusion.prediction_type must be one of {PREDICTION_TYPES}, "
                                f"got {self.prediction_type!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise NeuroditError(f"diffusion.beta_schedule must be one of {BETA_SCHEDULES}, "
                                f"got {self.beta_schedule!r}")
        if self.snr_floor is not None and (self.prediction_type != "sample" or self.snr_gamma is None):
            raise NeuroditError("diffusion.snr_floor needs prediction_type sample and a snr_gamma")
        if self.rescale_zero_terminal_snr and self.prediction_type == "epsilon":
            # at SNR 0 the noise alone says nothing about x0 (Lin et al. 2024, Sec. 3.2)
            raise NeuroditError("diffusion.rescale_zero_terminal_snr needs prediction_type "
                                "v_prediction or sample, not epsilon")


def make_noise_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The training-time forward process (``add_noise``, ``get_velocity``, alphas_cumprod)."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        rescale_betas_zero_snr=cfg.rescale_zero_terminal_snr,
        clip_sample=False,  # we clamp the final sample ourselves; clipping x0 each step blurs v/eps models
    )


def snr(scheduler: DDPMScheduler, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio a_t / (1 - a_t) of timesteps ``t`` (B,) -> (B,) float32."""
    ac = scheduler.alphas_cumprod.to(t.device)[t].float()
    return ac / (1.0 - ac).clamp_min(1e-8)
