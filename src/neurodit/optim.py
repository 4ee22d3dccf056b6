"""The diffusion loops' optimiser and their bare step: one owner for what ``neurodit.train`` runs and
``neurodit bench`` times against it, and the start-up choice of CPU threads.

- :func:`adamw`: AdamW with the fused kernel (one C++ pass over all tensors). Measured 2026-12-05 on the
  tiny-p32 DiT (8.6M parameters in 120 tensors, 2 shared AMD EPYC AVX-512 cores): 5.1 ms a step fused vs
  13.8 ms for torch's CPU default (a Python loop over tensors) with 1 thread; with 2 threads on the loaded
  machine 13 ms vs 86 ms (every small elementwise op pays an OpenMP hand-off).
- :func:`bare_step`: forward + backward + optimiser step of the network alone on one fixed batch.
- :func:`pick_threads`: the fastest intra-op thread count for a step, by timing it: on a CPU shared with
  other jobs one thread can beat all cores several times over (``neurodit.train.loop.process_settings``),
  on an idle one the cores win; only a measurement tells which holds now.
- :func:`pick_fastest`: the fastest of several ways to run one step (precisions), by timing them in turn.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel for the parameters' device (CPU and CUDA float tensors)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def bare_step(model: torch.nn.Module, process: Any, x: torch.Tensor, y: torch.Tensor,
              autocast: torch.dtype | None, optimizer: torch.optim.Optimizer) -> Callable[[], torch.Tensor]:
    """One bare training step as a function: ``process.loss`` (a ``neurodit.diffusion`` process) of
    ``model`` on inputs ``x`` (B, C, *spatial) and class ids ``y`` (B,) under ``autocast`` (None: full
    precision), backward, ``optimizer.step()``; it returns the detached loss."""
    device_type = x.device.type

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = process.loss(model, x, y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pick_fastest(steps: dict[str, Callable[[], Any]], rounds: int = 3, prefer: str | None = None,
                 margin: float = 0.1) -> dict[str, Any]:
    """Time each of ``steps`` (name -> one step) once per round, in turn (a change in the machine's load hits
    every candidate), after one untimed call each; return ``{"pick": the name of the lowest median,
    "trial_s": {name: median seconds}, "picked_by": "timing"}``. ``prefer`` stays the pick unless another
    is faster by more than ``margin`` (a fraction): near-equal candidates do not flip from run to run."""
    for step in steps.values():
        step()
    trial: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            trial[name] += time_calls(step, 1, warmup=0)
    medians = {name: statistics.median(t) for name, t in trial.items()}
    pick = min(medians, key=medians.get)
    if prefer in medians and medians[pick] * (1 + margin) >= medians[prefer]:
        pick = prefer
    return {"pick": pick, "trial_s": {k: round(v, 4) for k, v in medians.items()}, "picked_by": "timing"}


def pick_threads(step: Callable[[], Any], rounds: int = 3, max_step_s: float = 2.0) -> dict[str, Any]:
    """Time ``step`` with all usable cores and with 1 thread, interleaved (a change in the machine's load
    hits both), and set the faster count; returns ``{"threads", "trial_s": {threads: median seconds},
    "picked_by"}``. A count whose median is already twice the other's is dropped after a round: on a
    loaded 2-core machine an all-core step took 5 s against 0.25 s with 1 thread (2026-12-05), and the
    trial must not cost more than it saves. The warm-up runs on 1 thread for the same reason; a warm-up
    step over ``max_step_s`` leaves all cores untried (large matrices use the cores; trying costs minutes).
    """
    cores = usable_cores()
    torch.set_num_threads(1)
    warm = time_calls(step, 1, warmup=0)[0]  # allocator, kernels, optimiser state
    if cores == 1 or warm > max_step_s:
        torch.set_num_threads(cores)
        return {"threads": cores, "trial_s": {}, "picked_by": "one core" if cores == 1 else "large step"}
    trial: dict[int, list[float]] = {cores: [], 1: []}
    live = list(trial)
    for _ in range(rounds):
        for n in live:
            torch.set_num_threads(n)
            trial[n] += time_calls(step, 1, warmup=0)
        best = min(statistics.median(trial[n]) for n in live)
        live = [n for n in live if statistics.median(trial[n]) <= 2 * best]
    medians = {n: statistics.median(t) for n, t in trial.items()}
    pick = min(medians, key=medians.get)
    torch.set_num_threads(pick)
    return {"threads": pick, "trial_s": {str(n): round(s, 4) for n, s in medians.items()}, "picked_by": "timing"}
