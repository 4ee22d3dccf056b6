"""Sampling: the scheduler factory and the classifier-free-guidance loop.

Classifier-free guidance (Ho & Salimans 2022) is our own loop over a diffusers scheduler because
diffusers' ``DiTPipeline`` hard-codes the null class as 1000 (ImageNet's; docs/NOTES.md): one forward pass over the
concatenated conditional + unconditional batch, ``out_u + g * (out_c - out_u)``, then ``scheduler.step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from neurodit.defaults import SAMPLING
from neurodit.diffusion.objective import predict
from neurodit.errors import NeuroditError

DDPM_SAMPLERS = ("ddim", "dpm", "ddpm")
SAMPLERS = (*DDPM_SAMPLERS, "euler", "heun", "ab2", "ancestral")  # euler / heun / ab2 / ancestral (and dpm): flow runs (diffusion.flow)


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
    raise NeuroditError(f"scheduler must be one of {DDPM_SAMPLERS}, got {kind!r}")


@torch.no_grad()
def guided_sample(model: torch.nn.Module, sampler, labels: torch.Tensor, null_class: int,
                  shape: tuple[int, ...], steps: int = SAMPLING.steps, guidance: float = SAMPLING.guidance,
                  generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
                  progress: Callable | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free-guided reverse diffusion for class ids ``labels`` (B,).

    ``shape`` is (C, *spatial) of one model input, e.g. (C, S, S). Returns (B, *shape) float32 in the
    model range. ``guidance`` = 1 is plain conditional sampling (no unconditional pass); 0 is
    unconditional. ``init``: the starting noise (B, *shape); drawn from ``generator`` when None.
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
        inp = torch.cat([x, x]) if use_cfg else x  # (2B, C, ...)
        inp = sampler.scale_model_input(inp, t)
        tt = torch.full((inp.shape[0],), int(t), device=device, dtype=torch.long)
        with ctx:
            out = predict(model, inp, tt, y, shape[0])
        if use_cfg:
            cond, uncond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        x = sampler.step(out, t, x, generator=generator).prev_sample
    return x
