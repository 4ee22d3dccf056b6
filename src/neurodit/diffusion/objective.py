"""Training objective: what the network regresses at a noisy input, and how each timestep is weighted.

DDPM (Ho et al. 2020): draw t ~ U{0..T-1} and noise, form x_t = sqrt(a_t) x0 + sqrt(1-a_t) eps and
regress a target: eps, the velocity v = sqrt(a_t) eps - sqrt(1-a_t) x0 (Salimans & Ho 2022) or x0.
Min-SNR-gamma (Hang et al. 2023) caps each timestep's effective weight at gamma.
Works on any input rank: (B, C, H, W) mosaics or (B, C, D, H, W) volumes.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from neurodit.diffusion.schedule import DiffusionConfig, snr


def predict(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
            channels: int) -> torch.Tensor:
    """The network's prediction for ``x`` (B, C, ...) at timesteps ``t`` (B,) and class ids ``y`` (B,).

    diffusers models return an output object (``.sample``), plain modules a tensor; learn-sigma models
    (e.g. DiT-XL/2) output 2C channels of which the first ``channels`` are the prediction.
    """
    out = model(x, timestep=t, class_labels=y)
    out = out.sample if hasattr(out, "sample") else out
    return out[:, :channels].float()


def training_target(scheduler: DDPMScheduler, cfg: DiffusionConfig, x0: torch.Tensor,
                    noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Regression target of ``cfg.prediction_type`` for clean ``x0``, ``noise`` (both (B, C, ...))."""
    if cfg.prediction_type == "epsilon":
        return noise
    if cfg.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return x0


def loss_weight(scheduler: DDPMScheduler, cfg: DiffusionConfig, t: torch.Tensor) -> torch.Tensor | None:
    """Per-sample loss weight (B,) of Min-SNR-gamma for the chosen target, or None (plain MSE).

    Min-SNR-gamma in terms of the target: eps-loss weight min(snr, g)/snr, v: min(snr, g)/(snr+1),
    x0: min(snr, g) (optionally floored at ``snr_floor``).
    """
    if cfg.snr_gamma is None:
        return None
    s = snr(scheduler, t)
    capped = torch.clamp(s, max=cfg.snr_gamma)
    if cfg.prediction_type == "epsilon":
        return capped / s.clamp_min(1e-8)
    if cfg.prediction_type == "v_prediction":
        return capped / (s + 1.0)
    return capped if cfg.snr_floor is None else capped.clamp_min(cfg.snr_floor)


def diffusion_loss(model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor,
                   scheduler: DDPMScheduler, cfg: DiffusionConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDPM training loss on a batch of clean inputs ``x0`` (B, C, ...) with class ids (B,).

    Returns a scalar: the mean squared error to the configured target, Min-SNR weighted when set.
    """
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                      device=x0.device)
    xt = scheduler.add_noise(x0, noise, t)  # (B, C, ...)
    target = training_target(scheduler, cfg, x0, noise, t)
    pred = predict(model, xt, t, labels, x0.shape[1])
    per_sample = ((pred - target.float()) ** 2).flatten(1).mean(dim=1)  # (B,)
    w = loss_weight(scheduler, cfg, t)
    if w is not None:
        per_sample = per_sample * w
    return per_sample.mean()
