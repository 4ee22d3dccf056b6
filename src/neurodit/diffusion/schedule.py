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
FLOW_PREDICTIONS = ("v", "x")  # flow: the network outputs the velocity, or the clean input (JiT, neurodit.diffusion.flow)
OBJECTIVES = ("ddpm", "flow")  # flow: rectified flow / flow matching (neurodit.diffusion.flow)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
class DiffusionConfig:
    """Noise process used in training; saved in the run folder so sampling uses the same one.

    ``objective`` ``ddpm`` (the fields below up to ``snr_floor``) or ``flow`` (rectified flow with a
    velocity loss and logit-normal timesteps, ``logit_mean``/``logit_std``; the network predicts the
    velocity or the clean input, ``prediction``; ``prediction_type``, ``beta_schedule`` and the Min-SNR
    fields do not apply to it).
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
    # flow: what the network outputs: the velocity ("v", SiT / SD3) or the clean input ("x", JiT: Li & He
    # 2025); the loss is on the velocity either way
    prediction: str = "v"
    t_min: float = 0.05  # x-prediction: the implied velocity (x_t - x) / max(t, t_min) (JiT clamps at 0.05)
    noise_scale: float = 1.0  # flow: x_t = (1 - t) x0 + t * noise_scale * eps (JiT's noise scale)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise NeuroditError(f"diffusion.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "flow" and self.snr_gamma is not None:
            raise NeuroditError("diffusion.snr_gamma (Min-SNR) applies to objective ddpm only; "
                                "set it to null for flow")
        if not self.logit_std > 0:
            raise NeuroditError(f"diffusion.logit_std must be > 0, got {self.logit_std}")
        if self.prediction not in FLOW_PREDICTIONS:
            raise NeuroditError(f"diffusion.prediction must be one of {FLOW_PREDICTIONS}, got {self.prediction!r}")
        if self.prediction != "v" and self.objective != "flow":
            raise NeuroditError("diffusion.prediction applies to objective flow; a ddpm run names its "
                                "target with diffusion.prediction_type")
        if not (0 < self.t_min < 1) or not self.noise_scale > 0:
            raise NeuroditError(f"diffusion.t_min must be in (0, 1) and diffusion.noise_scale > 0, got "
                                f"{self.t_min} and {self.noise_scale}")
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
