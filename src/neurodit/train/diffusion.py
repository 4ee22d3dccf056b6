"""Diffusion objective and classifier-free-guidance sampling around a diffusers DiT.

Training follows DDPM (Ho et al. 2020) with a choice of network target: the noise ``epsilon``,
the velocity ``v_prediction`` (Salimans & Ho 2022) or the clean image ``sample``; an optional
Min-SNR-gamma loss weight (Hang et al. 2023) and zero-terminal-SNR beta rescaling (Lin et al. 2024).
Sampling is classifier-free guidance (Ho & Salimans 2022) written as our own loop, because
``DiTPipeline`` hard-codes the null class as 1000 (FACTS.md): one forward pass over the
concatenated conditional + unconditional batch, ``eps_u + g * (eps_c - eps_u)``, then ``scheduler.step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from neurodit.errors import NeuroditError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SAMPLERS = ("ddim", "dpm", "ddpm")


@dataclass
class DiffusionConfig:
    """Noise process used in training; saved in the run folder so sampling uses the same one."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    rescale_zero_terminal_snr: bool = False
    snr_gamma: float | None = None  # Min-SNR-gamma weight; None = plain MSE on the target
    # x0-prediction only: lower bound of the Min-SNR weight, so high-noise steps (which decide the
    # global layout: which slice sits in which mosaic cell) keep the plain x0 weight 1 while
    # low-noise steps (detail, subject-to-subject spread) are up-weighted to gamma.
    snr_floor: float | None = None

    def __post_init__(self) -> None:
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


def make_sampler(kind: str, train_scheduler: DDPMScheduler):
    """A diffusers sampler sharing the training betas and prediction type.

    ``ddim``/``dpm`` use ``trailing`` timestep spacing so the first step starts at t = T-1, which
    zero-terminal-SNR schedules need (Lin et al. 2024) and which does no harm otherwise.
    """
    config = dict(train_scheduler.config)
    if kind == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="trailing", clip_sample=False,
                                         set_alpha_to_one=True)  # last step lands on x0, not t=0 noise
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(
            config, timestep_spacing="trailing", algorithm_type="dpmsolver++", solver_order=2,
            final_sigmas_type="zero")  # last step lands on x0 rather than on sigma_min noise
    if kind == "ddpm":
        return DDPMScheduler.from_config(config, timestep_spacing="trailing")
    raise NeuroditError(f"scheduler must be one of {SAMPLERS}, got {kind!r}")


def _snr(scheduler: DDPMScheduler, t: torch.Tensor) -> torch.Tensor:
    ac = scheduler.alphas_cumprod.to(t.device)[t].float()
    return ac / (1.0 - ac).clamp_min(1e-8)


def diffusion_loss(model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor,
                   scheduler: DDPMScheduler, cfg: DiffusionConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDPM training loss on a batch of clean images ``x0`` (B, C, S, S) with class ids (B,).

    Draws t ~ U{0..T-1} and noise, forms x_t = sqrt(a_t) x0 + sqrt(1-a_t) eps and regresses the
    configured target. Returns a scalar (mean squared error, Min-SNR weighted when configured).
    """
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                      device=x0.device)
    xt = scheduler.add_noise(x0, noise, t)  # (B, C, S, S)
    if cfg.prediction_type == "epsilon":
        target = noise
    elif cfg.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = x0
    out = model(xt, timestep=t, class_labels=labels).sample
    pred = out[:, : x0.shape[1]].float()  # learn_sigma models (e.g. DiT-XL/2) output 2C channels
    per_sample = ((pred - target.float()) ** 2).mean(dim=(1, 2, 3))  # (B,)
    if cfg.snr_gamma is not None:
        # Min-SNR-gamma: cap each timestep's effective weight at gamma (Hang et al. 2023), expressed
        # for the chosen target: eps-loss weight min(snr, g)/snr, v: min(snr, g)/(snr+1), x0: min(snr, g).
        snr = _snr(scheduler, t)
        capped = torch.clamp(snr, max=cfg.snr_gamma)
        if cfg.prediction_type == "epsilon":
            w = capped / snr.clamp_min(1e-8)
        elif cfg.prediction_type == "v_prediction":
            w = capped / (snr + 1.0)
        else:
            w = capped if cfg.snr_floor is None else capped.clamp_min(cfg.snr_floor)
        per_sample = per_sample * w
    return per_sample.mean()


@torch.no_grad()
def guided_sample(model: torch.nn.Module, sampler, labels: torch.Tensor, null_class: int,
                  shape: tuple[int, int, int], steps: int = 25, guidance: float = 2.0,
                  generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
                  progress: Callable | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free-guided reverse diffusion for class ids ``labels`` (B,).

    ``shape`` is (C, S, S) of one model input. Returns (B, C, S, S) float32 in the model range.
    ``guidance`` = 1 is plain conditional sampling (no unconditional pass); 0 is unconditional.
    ``init``: the starting noise (B, C, S, S); drawn from ``generator`` when None.
    """
    device = labels.device
    b = labels.shape[0]
    if init is not None:
        x = init.to(device=device, dtype=torch.float32)
    else:
        x = torch.randn((b, *shape), generator=generator, device=device, dtype=torch.float32)
    sampler.set_timesteps(steps, device=device)
    x = x * sampler.init_noise_sigma
    use_cfg = guidance != 1.0
    null = torch.full_like(labels, null_class)
    y = torch.cat([labels, null]) if use_cfg else labels  # (2B,) conditional then unconditional
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())
    timesteps = sampler.timesteps
    for t in (progress(timesteps) if progress else timesteps):
        inp = torch.cat([x, x]) if use_cfg else x  # (2B, C, S, S)
        inp = sampler.scale_model_input(inp, t)
        tt = torch.full((inp.shape[0],), int(t), device=device, dtype=torch.long)
        with ctx:
            out = model(inp, timestep=tt, class_labels=y).sample
        out = out[:, : shape[0]].float()
        if use_cfg:
            cond, uncond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        x = sampler.step(out, t, x, generator=generator).prev_sample
    return x
