"""The bare training step of a generator's network and its sampling speed.

The bare step is what the training loop cannot do faster than: forward + backward + AdamW step of the
network alone on one fixed batch, under the loop's precision and objective, nothing else (no data
indexing, label dropout, gradient clipping, EMA, logging). Its model FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward (matmuls, convolutions and
attention; elementwise ops are free in this count, as in every MFU figure), so the same code serves the
DiT and the 3D UNet; for the DiT the hand count (:func:`dit_analytic_flops`) is used, because the counter
misses torch's fused CPU attention kernel (SDPA). Each step is timed alone and the median quoted: on a shared machine the median
resists the steps another job slowed down.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodit.bench.machine import peak_rss_mb, reset_peak_rss
from neurodit.defaults import SAMPLING


@dataclass
class StepSubject:
    """What the bare step trains: a network, its process (loss, samplers) and one batch's shape."""

    model: torch.nn.Module
    process: Any  # neurodit.diffusion Diffusion | FlowMatching
    input_shape: tuple[int, ...]  # one model input (C, *spatial)
    num_classes: int  # real classes; the null class is num_classes
    batch_size: int
    mixed_precision: str  # accelerate's name: "bf16", "fp16" or "no"
    sampler: str  # the sampler the run (or the objective) uses by default
    source: str  # "run <dir>" or "preset <name>"


def subject_from_run(run_dir: str | Path, device: torch.device, batch_size: int | None = None) -> StepSubject:
    """The network, objective, batch size and precision of a trained run (``neurodit.runs.TrainedRun``):
    the bare step then does the work of that run's loop, step for step."""
    from neurodit.diffusion import create_diffusion
    from neurodit.io import read_json
    from neurodit.runs import TrainedRun

    run = TrainedRun(run_dir, device)
    cfg, info = run.train_config, read_json(run.path / "run.json")
    _no_label_dropout(run.model)
    return StepSubject(model=run.model.train(), process=create_diffusion(run.diffusion),
                       input_shape=tuple(run.input_shape), num_classes=run.labels.num_classes,
                       batch_size=batch_size or int(cfg.get("batch_size", 16)),
                       mixed_precision=info.get("mixed_precision", "no"),
                       sampler=run.sampler, source=f"run {run.path}")


def subject_from_preset(name: str, device: torch.device, batch_size: int = 16) -> StepSubject:
    """A fresh DiT of preset ``name`` (2 classes) with the default objective, at ``train``'s ``auto``
    precision: the speed of a preset without data or a run."""
    from neurodit.diffusion import DiffusionConfig, create_diffusion, default_sampler, mixed_precision_for
    from neurodit.models import build_dit, load_preset
    from neurodit.models.dit import fit_attention

    preset = load_preset(name)
    torch.manual_seed(0)
    model = fit_attention(build_dit(preset, 2, dit_init=False)).to(device).train()
    _no_label_dropout(model)
    cfg = DiffusionConfig(prediction_type="v_prediction")
    return StepSubject(model=model, process=create_diffusion(cfg),
                       input_shape=(preset.in_channels, preset.sample_size, preset.sample_size), num_classes=2,
                       batch_size=batch_size, mixed_precision=mixed_precision_for("auto", device.type),
                       sampler=default_sampler(cfg), source=f"preset {name}")


def _no_label_dropout(model: torch.nn.Module) -> None:
    # the loop drops labels itself (neurodit.train); diffusers' per-block dropout stays off in the DiT
    from neurodit.models.dit import disable_label_dropout

    if hasattr(model, "transformer_blocks"):
        disable_label_dropout(model)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_step(subj: StepSubject, steps: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Time ``steps`` bare steps (``neurodit.optim.bare_step``, the loop's AdamW; after ``warmup``) on one
    fixed random batch (B, *input_shape) with the threads in use; returns seconds per step (median),
    samples/s, the counted FLOPs per step (``FlopCounterMode``: it misses torch's fused CPU attention,
    see :func:`dit_analytic_flops`) and the peak RSS (MB) of the steps (the high-water mark reset before
    them where Linux allows)."""
    from torch.utils.flop_counter import FlopCounterMode

    from neurodit.diffusion import autocast_dtype
    from neurodit.optim import adamw, time_calls
    from neurodit.optim import bare_step as make_step

    device = next(subj.model.parameters()).device
    dtype = autocast_dtype(subj.mixed_precision)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((subj.batch_size, *subj.input_shape), generator=g, device=device)  # (B, C, *spatial)
    y = torch.randint(0, subj.num_classes + 1, (subj.batch_size,), generator=g, device=device)  # (B,)
    step = make_step(subj.model, subj.process, x, y, dtype, adamw(subj.model.parameters(), lr=1e-4))
    reset = reset_peak_rss()
    with FlopCounterMode(display=False) as counter:  # one forward + backward (+ the optimiser: no FLOPs)
        step()
    flops = counter.get_total_flops()
    times = time_calls(step, steps, warmup=warmup)
    step_s = statistics.median(times)
    return {"batch_size": subj.batch_size, "mixed_precision": subj.mixed_precision,
            "threads": torch.get_num_threads(), "steps": steps, "s_per_step": round(step_s, 4),
            "s_per_step_min": round(min(times), 4), "samples_per_s": round(subj.batch_size / step_s, 2),
            "counted_gflop_per_step": round(flops / 1e9, 3),
            "peak_rss_mb": peak_rss_mb(), "peak_rss_scope": "bare steps" if reset else "whole process"}


def dit_analytic_flops(model: torch.nn.Module, batch_size: int) -> int | None:
    """Model FLOPs of one DiT forward + backward by hand (None for other networks): 3 x forward (the
    backward computes two matmuls per forward one), forward = 2 x multiply-adds of the token-wise layers
    per token (per block: q, k, v, out D^2 each, MLP D -> 4D -> D; the patch embedding and the output
    projection, p^2 C x D each) plus attention (QK^T and AV: 2 T^2 D per block). The per-sample layers
    (timestep and label embedders, adaLN) are left out: under 2 % of the tiny-p32 step."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "attention_head_dim"):
        return None
    d, p = cfg.num_attention_heads * cfg.attention_head_dim, cfg.patch_size
    tokens = (cfg.sample_size // p) ** 2
    per_token = cfg.num_layers * 12 * d * d + p * p * (cfg.in_channels + cfg.out_channels) * d
    attention = cfg.num_layers * 2 * tokens * tokens * d
    return 3 * 2 * batch_size * (tokens * per_token + attention)


@torch.no_grad()
def sample_seconds(subj: StepSubject, steps: int = SAMPLING.steps, guidance: float = SAMPLING.guidance,
                   batch: int = 4, kind: str | None = None) -> float:
    """Seconds per sampled network input (one volume) of classifier-free-guided sampling of ``batch``
    inputs with ``kind`` (default: the subject's sampler) in ``steps`` steps; the model is left in eval."""
    from neurodit.diffusion import autocast_dtype

    device = next(subj.model.parameters()).device
    subj.model.eval()
    labels = torch.arange(batch, device=device) % subj.num_classes
    _sync(device)
    t0 = time.perf_counter()
    subj.process.sample(subj.model, labels, subj.num_classes, subj.input_shape, kind=kind or subj.sampler,
                        steps=steps, guidance=guidance, autocast_dtype=autocast_dtype(subj.mixed_precision))
    _sync(device)
    return (time.perf_counter() - t0) / batch
