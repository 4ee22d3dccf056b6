"""Rectified flow / flow matching: a straight path from data to noise and its velocity.

Liu et al. 2023 (rectified flow), Lipman et al. 2023 (flow matching) and Esser et al. 2024 (SD3,
"Scaling Rectified Flow Transformers"): x_t = (1 - t) x0 + t eps with t in [0, 1] (t = 0 data, t = 1
noise); the network regresses the velocity dx_t/dt = eps - x0. Timesteps are drawn logit-normal,
t = sigmoid(m + s n) with n ~ N(0, 1) (SD3's best setting m = 0, s = 1), which spends the training
on the middle of the path where the velocity is hardest to predict. Sampling integrates the ODE
dx/dt = v(x, t) from t = 1 to t = 0 with Euler, Heun, second-order Adams-Bashforth steps in t (``ab2``: one
network call a step, the previous step's velocity for the second order) or DPM-Solver++(2M) (``dpm``; Lu et
al. 2022): the straight path is a diffusion with alpha = 1 - t, sigma = t, its data prediction is
x - t v, and the solver steps in lambda = log(alpha / sigma), where one step is exact for a constant data
prediction (Euler is DPM-Solver++'s first order here), and classifier-free guidance on the velocity, v = v_u + g (v_c - v_u) (Ho &
Salimans 2022). SiT (Ma et al. 2024) trains DiT's unchanged
network this way.

Clean-data prediction (``prediction: x``; Li & He 2025, "Back to Basics: Let Denoising Generative Models
Denoise", JiT, arXiv 2511.13720): the network outputs x0_hat and the loss stays on the velocity it implies,
v_hat = (x_t - x0_hat) / max(t, t_min), against eps - x0 ("x-prediction, v-loss"); the samplers integrate
that implied velocity. A pixel transformer with large patches outputs a low-rank map of each token's
state: a velocity or noise target is full-rank noise in the directions it cannot reach, clean data lies
near a low-dimensional manifold (JiT Sec. 3). ``noise_scale`` s draws the path to s * eps (x_t =
(1 - t) x0 + t s eps, velocity s eps - x0); the sampler starts from s * N(0, 1).

The network sees ``timestep = t * num_train_timesteps`` (float, (B,)): the same numeric range as the
DDPM timesteps, so DiT's and MONAI's sinusoidal timestep embeddings need no change. Works on any
input rank: (B, C, H, W) mosaics or (B, C, D, H, W) volumes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from neurodit.defaults import SAMPLING
from neurodit.diffusion.objective import predict
from neurodit.diffusion.schedule import DiffusionConfig
from neurodit.errors import NeuroditError

FLOW_SAMPLERS = ("euler", "heun", "ab2", "dpm", "ancestral")


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
    noise = cfg.noise_scale * torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = logit_normal_t(b, cfg, generator, x0.device)  # (B,)
    tb = t.view(b, *([1] * (x0.dim() - 1))).to(x0.dtype)  # (B, 1, ...) broadcast over C and space
    xt = (1.0 - tb) * x0 + tb * noise
    target = (noise - x0).float()
    pred = to_velocity(predict(model, xt, model_time(t, cfg), labels, x0.shape[1]), xt, tb, cfg)
    return ((pred - target) ** 2).flatten(1).mean(dim=1).mean()


def to_velocity(out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor | float, cfg: DiffusionConfig) -> torch.Tensor:
    """The velocity (B, C, ...) float32 a network output ``out`` means at ``xt`` and time ``t`` (a float or
    (B, 1, ...)): ``out`` itself for ``prediction: v``; (x_t - out) / max(t, t_min) for ``prediction: x``."""
    if cfg.prediction == "v":
        return out
    denom = max(float(t), cfg.t_min) if isinstance(t, float) else t.float().clamp_min(cfg.t_min)
    return (xt.float() - out) / denom


@torch.no_grad()
def flow_sample(model: torch.nn.Module, labels: torch.Tensor, null_class: int, shape: tuple[int, ...],
                cfg: DiffusionConfig, *, kind: str = "euler", steps: int = SAMPLING.steps,
                guidance: float = SAMPLING.guidance,
                generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None,
                progress: Callable | None = None, init: torch.Tensor | None = None,
                shift: float = SAMPLING.flow_shift) -> torch.Tensor:
    """Integrate dx/dt = v from t = 1 (noise) to t = 0 in ``steps`` steps on :func:`flow_time_grid`
    (``shift``) for class ids ``labels`` (B,); returns (B, *shape) float32 in the model range.

    ``kind``: ``euler`` (one network call per step), ``heun`` (Heun's 2nd-order method: two calls
    per step, Euler on the last one, as in Karras et al. 2022) or ``ab2`` (2nd-order Adams-Bashforth on
    the step grid: one call per step, Euler on the first) or ``dpm`` (DPM-Solver++(2M) in lambda, one call
    per step; module docstring) or ``ancestral`` (DDPM's stochastic step on the straight path, one call per step:
    :func:`_ancestral_step`; its noise comes from ``generator``). ``guidance`` 1 = conditional only;
    ``init``: the starting noise (B, *shape) before ``cfg.noise_scale``, drawn from ``generator`` when None.
    """
    if kind not in FLOW_SAMPLERS:
        raise NeuroditError(f"a flow run samples with one of {FLOW_SAMPLERS}, got {kind!r}")
    device = labels.device
    b = labels.shape[0]
    x = cfg.noise_scale * (init.to(device=device, dtype=torch.float32) if init is not None
                           else torch.randn((b, *shape), generator=generator, device=device, dtype=torch.float32))
    use_cfg = guidance != 1.0
    y = torch.cat([labels, torch.full_like(labels, null_class)]) if use_cfg else labels  # (2B,)
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else contextlib.nullcontext())

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        inp = torch.cat([x, x]) if use_cfg else x  # (2B, C, ...)
        tt = model_time(torch.full((inp.shape[0],), t, device=device), cfg)
        with ctx:
            v = to_velocity(predict(model, inp, tt, y, shape[0]), inp, t, cfg)
        if use_cfg:
            cond, uncond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        return v

    grid = flow_time_grid(steps, shift)
    pairs = list(zip(grid[:-1], grid[1:], strict=True))
    prev: tuple[torch.Tensor, float] | None = None  # ab2 / dpm: the last step's velocity or x0, its step size
    for t, t_next in (progress(pairs) if progress else pairs):
        d, h = velocity(x, t), t_next - t
        if kind == "dpm":
            x, prev = _dpm_step(x, d, t, t_next, prev)
            continue
        if kind == "ancestral":
            x = _ancestral_step(x, d, t, t_next, cfg.noise_scale, generator)
            continue
        if kind == "heun" and t_next > 0:
            x = x + h * 0.5 * (d + velocity(x + h * d, t_next))
        elif kind == "ab2" and prev is not None:
            # x' = x + h [(1 + r/2) d - (r/2) d_prev], r = h / h_prev: exact for a velocity linear in t
            r = h / prev[1]
            x = x + h * ((1 + 0.5 * r) * d - 0.5 * r * prev[0])
        else:
            x = x + h * d
        prev = (d, h)
    return x


def _ancestral_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, s: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """One DDPM ancestral step on the straight path (alpha = 1 - t, sigma = s t): draw x' from the posterior
    q(x' | x, x0_hat), i.e. x' = alpha' x0_hat + sqrt(sigma'^2 - c^2) eps_hat + c z with c^2 = sigma'^2 (1 -
    (alpha sigma')^2 / (alpha' sigma)^2) (DDIM with eta 1: Song et al. 2021, Eq. 12-16). Fresh noise at every
    step lets the network correct its own errors (SiT: Ma et al. 2024 found SDE sampling better than ODE
    sampling for its models); the step lands on x0_hat at t' = 0."""
    x0 = x - t * v
    if t_next <= 0:
        return x0
    eps = (x - (1 - t) * x0) / (s * t)  # the noise the prediction implies, (B, C, ...)
    ratio = ((1 - t) * t_next) / ((1 - t_next) * t)  # (alpha sigma') / (alpha' sigma), < 1 as t' < t
    c = s * t_next * math.sqrt(max(0.0, 1.0 - ratio * ratio))
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (1 - t_next) * x0 + math.sqrt(max(0.0, (s * t_next) ** 2 - c * c)) * eps + c * z


def flow_time_grid(steps: int, shift: float = SAMPLING.flow_shift) -> list[float]:
    """``steps + 1`` times from 1 (noise) to 0 (data): u uniform, t = shift u / (1 + (shift - 1) u) (Esser et
    al. 2024, SD3's timestep shift): shift 1 is uniform, shift > 1 puts more steps near the noise end, where
    the trained path's velocity bends most (the recipe trains there most too: logit-normal m 1)."""
    if steps < 1 or shift <= 0:
        raise NeuroditError(f"flow sampling needs steps >= 1 and shift > 0, got {steps} and {shift}")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * u / (1 + (shift - 1) * u)).tolist()


def _lambda(t: float) -> float:
    """log(alpha / sigma) of the straight path at t (alpha = 1 - t, sigma = t); +-inf at the ends."""
    return math.inf if t <= 0 else -math.inf if t >= 1 else math.log((1 - t) / t)


def _dpm_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float,
              prev: tuple[torch.Tensor, float] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, float]]:
    """One DPM-Solver++(2M) step from t to t_next given the velocity ``v`` at (x, t) and ``prev`` = (the
    last step's data prediction, its lambda step h); returns (x at t_next, this step's (x0, h)).

    x0 = x - t v; first order x' = (sigma'/sigma) x - alpha' (e^-h - 1) D with h = lambda' - lambda and
    D = x0; second order D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev, r = h_prev / h (Lu et al. 2022, Alg. 2).
    At t_next = 0 the step lands on D; from t = 1 (sigma' / sigma x = t' x) it is Euler."""
    x0 = x - t * v
    h = _lambda(t_next) - _lambda(t)
    if t_next <= 0:
        return x0, (x0, h)
    d = x0
    if prev is not None and math.isfinite(prev[1]) and math.isfinite(h):
        r = prev[1] / h
        d = (1 + 0.5 / r) * x0 - (0.5 / r) * prev[0]
    # alpha' (e^-h - 1) = alpha sigma'/sigma - alpha' (finite also from t = 1, where alpha = 0)
    x = (t_next / t) * x - ((1 - t) * t_next / t - (1 - t_next)) * d
    return x, (x0, h)
