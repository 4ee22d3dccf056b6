"""Rectified flow / flow matching: a straight path from data to noise and its velocity.

Liu et al. 2023 (rectified flow), Lipman et al. 2023 (flow matching) and Esser et al. 2024 (SD3,
"Scaling Rectified Flow Transformers"): x_t = (1 - t) x0 + t eps with t in [0, 1] (t = 0 data, t = 1
noise); the network regresses the velocity dx_t/dt = eps - x0. Timesteps are drawn logit-normal,
t = sigmoid(m + s n) with n ~ N(0, 1) (SD3's best setting m = 0, s = 1), which spends the training
on the middle of the path where the velocity is hardest to predict. Sampling integrates the ODE
dx/dt = v(x, t) from t = 1 to t = 0 with Euler or Heun steps and classifier-free guidance on the
velocity, v = v_u + g (v_c - v_u) (Ho & Salimans 2022). SiT (Ma et al. 2024) trains DiT's unchanged
network this way.

The network sees ``timestep = t * num_train_timesteps`` (float, (B,)): the same numeric range as the
DDPM timesteps, so DiT's and MONAI's sinusoidal timestep embeddings need no change. Works on any
input rank: (B, C, H, W) mosaics or (B, C, D, H, W) volumes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from neurodit.defaults import SAMPLING
from neurodit.diffusion.objective import predict
from neurodit.diffusion.schedule import DiffusionConfig
from neurodit.errors import NeuroditError

FLOW_SAMPLERS = ("euler", "heun")


def logit_normal_t(b: int, cfg: DiffusionConfig, generator: torch.Generator | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
    """(B,) float32 timesteps in (0, 1), t = sigmoid(logit_mean + logit_std * N(0, 1)) (SD3 Sec. 3.1)."""
    n = torch.randn((b,), generator=generator, device=device)
    return torch.sigmoid(cfg.logit_mean + cfg.logit_std * n)


def model_time(t: torch.Tensor, cfg: DiffusionConfig) -> torch.Tensor:
    """Continuous t (B,) in [0, 1] -> the network's timestep input (B,) in [0, num_train_timesteps]."""
    return t.float() * cfg.num_train_timesteps


def flow_loss(model: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor, cfg: DiffusionConfig,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar flow-matching loss on clean inputs ``x0`` (B, C, ...) with class ids ``labels`` (B,):
    mean squared error of the predicted velocity to eps - x0 at x_t = (1 - t) x0 + t eps."""
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = logit_normal_t(b, cfg, generator, x0.device)  # (B,)
    tb = t.view(b, *([1] * (x0.dim() - 1))).to(x0.dtype)  # (B, 1, ...) broadcast over C and space
    xt = (1.0 - tb) * x0 + tb * noise
    target = (noise - x0).float()
    pred = predict(model, xt, model_time(t, cfg), labels, x0.shape[1])
    return ((pred - target) ** 2).flatten(1).mean(dim=1).mean()


@torch.no_grad()
def flow_sample(model: torch.nn.Module, labels: torch.Tensor, null_class: int, shape: tuple[int, ...],
                cfg: DiffusionConfig, *, kind: str = "euler", steps: int = SAMPLING.steps,
                guidance: float = SAMPLING.guidance,
                generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
                progress: Callable | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate dx/dt = v from t = 1 (noise) to t = 0 in ``steps`` uniform steps for class ids
    ``labels`` (B,); returns (B, *shape) float32 in the model range.

    ``kind``: ``euler`` (one network call per step) or ``heun`` (Heun's 2nd-order method: two calls
    per step, Euler on the last one, as in Karras et al. 2022). ``guidance`` 1 = conditional only;
    ``init``: the starting noise (B, *shape), drawn from ``generator`` when None.
    """
    if kind not in FLOW_SAMPLERS:
        raise NeuroditError(f"a flow run samples with one of {FLOW_SAMPLERS}, got {kind!r}")
    device = labels.device
    b = labels.shape[0]
    x = (init.to(device=device, dtype=torch.float32) if init is not None
         else torch.randn((b, *shape), generator=generator, device=device, dtype=torch.float32))
    use_cfg = guidance != 1.0
    y = torch.cat([labels, torch.full_like(labels, null_class)]) if use_cfg else labels  # (2B,)
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        inp = torch.cat([x, x]) if use_cfg else x  # (2B, C, ...)
        tt = model_time(torch.full((inp.shape[0],), t, device=device), cfg)
        with ctx:
            v = predict(model, inp, tt, y, shape[0])
        if use_cfg:
            cond, uncond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        return v

    grid = torch.linspace(1.0, 0.0, steps + 1).tolist()
    pairs = list(zip(grid[:-1], grid[1:], strict=True))
    for t, t_next in (progress(pairs) if progress else pairs):
        d = velocity(x, t)
        x_euler = x + (t_next - t) * d
        if kind == "heun" and t_next > 0:
            x = x + (t_next - t) * 0.5 * (d + velocity(x_euler, t_next))
        else:
            x = x_euler
    return x
