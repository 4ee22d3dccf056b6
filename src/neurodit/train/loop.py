"""``train_diffusion``: finetune (or train) a class-conditional diffusion generator with accelerate: the
mosaic DiT (``generator: dit``) or a 3D diffusion UNet on whole volumes (``generator: ddpm3d``).

Chattopadhyay et al. 2025 finetune DiT (Peebles & Xie 2023) on 2D mosaics tiled from 3D MD maps.
One loop for every preset: pixel presets regress mosaics directly, latent presets (DiT-XL/2) regress
SD-VAE latents of the mosaics. ``accelerate launch -m neurodit.cli train ...`` runs the same code on
several GPUs or CPU processes (each process runs its own micro-batches of the step's global batch,
:func:`micro_batch_index`; gradients are all-reduced by accelerate; README "Multi-GPU and multi-node").
Checkpoints and resume: ``neurodit.train.checkpoint`` (bit-identical resume after ``kill -9``).

``train_diffusion`` is a short sequence of named steps, each a function of its own (and testable alone):
:func:`plan_run` (inputs checked, run folder cleared or resumed) -> :func:`set_up_run_folder`
(``neurodit.runs.write_run_files``) -> :func:`build_model` -> :func:`build_inputs` (the cache) ->
:func:`standardize_inputs` -> :func:`choose_step_settings` (threads and precision, timed) ->
:func:`make_accelerator` -> :func:`restore` (last checkpoint) -> :func:`train_loop` ->
:func:`export_run` (EMA weights, previews, ``run.json``). The process (loss, samplers; ddpm or flow) is
``neurodit.diffusion``; process-wide torch settings are restored on exit (:func:`process_settings`).
Nothing here branches on the generator's name: what differs between generators (the network, its
inputs: (N, C, S, S) mosaics or (N, 1, D, H, W) volumes, the grid check) is the generator's input
adapter (``neurodit.generators.inputs``), chosen in :func:`plan_run` from the registry.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodit.config import to_dict
from neurodit.diffusion import Diffusion, autocast_dtype, create_diffusion, mixed_precision_for
from neurodit.errors import NeuroditError
from neurodit.generators.inputs import InputAdapter
from neurodit.generators.registry import diffusion_names, get_generator, is_diffusion
from neurodit.io import atomic_dir, atomic_write_text, read_json, write_run_info
from neurodit.optim import adamw, bare_step, pick_fastest, pick_threads
from neurodit.runs import LabelSpec, is_run_folder, make_labels, write_run_files
from neurodit.standardize import save_standardizer
from neurodit.train import checkpoint as ckpt_io
from neurodit.train.config import TrainConfig, check_resume_identity
from neurodit.train.data import cache_key, load_or_build_inputs

log = logging.getLogger(__name__)

# Fields that define what a diffusion run learns: a resumed run must agree on all of them.
IDENTITY = ("generator", "preset", "preset_overrides", "label", "age_bins", "diffusion", "unet", "init",
            "standardize", "standardize_floor")


@contextlib.contextmanager
def process_settings(num_threads: int = 0) -> Iterator[None]:
    """Apply process-wide torch settings for one run and restore them on exit (also on error).

    ``num_threads`` > 0 sets the CPU intra-op threads: on a CPU shared with other jobs, OpenMP threads
    that wait for each other cost more than they give (measured: 5 s/step with 2 threads vs 1.1 s/step
    with 1 on a loaded 2-core machine). The global RNG (seeded for the model init) is forked, so the
    caller's random stream is the same after a run as before it.
    """
    threads = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            if num_threads:
                torch.set_num_threads(num_threads)
            yield
    finally:
        torch.set_num_threads(threads)


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    return ckpt_io.checkpoint_dirs(run_dir)


def _write_loss_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", "loss", "lr"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path) -> list[tuple[int, Path]]:
    ckpts = _checkpoints(run_dir) if run_dir.is_dir() else []
    if cfg.resume:
        if not ckpts:
            raise NeuroditError("--resume: no checkpoint in checkpoints/ to resume from", run_dir)
        check_resume_identity(cfg, run_dir, IDENTITY)
        return ckpts
    if run_dir.exists() and any(run_dir.iterdir()):
        started_only = ((run_dir / "train_config.yaml").is_file() and not (run_dir / "model").exists()
                        and not (run_dir / "run.json").exists() and not ckpts
                        and not any((run_dir / "checkpoints").glob(".step-*.partial")))
        if started_only:  # our own run that failed before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
            return []
        if not cfg.overwrite:
            raise NeuroditError("run folder exists and is not empty (pass --resume to continue it or "
                                "--overwrite to replace it)", run_dir)
        if not is_run_folder(run_dir, finished=False):
            raise NeuroditError("refusing to --overwrite a folder that is not a neurodit run "
                                "(no train_config.yaml)", run_dir)
        shutil.rmtree(run_dir)
    return []


def _seeded(seed: int, step: int, part: int, device: torch.device) -> torch.Generator:
    # One generator per (seed, step, micro-batch): batches, noise, timesteps and label dropout of step k
    # are the same whether or not the run was interrupted and resumed before k. ``part`` is the
    # micro-batch's index in the step's global batch (see micro_batch_index), not the process rank.
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_176 + part * 7_919) % (2**63 - 1))
    return g


def micro_batch_index(micro: int, rank: int, world: int) -> int:
    """Index of process ``rank``'s ``micro``-th micro-batch in a step's global batch of
    ``world * grad_accum`` micro-batches (each ``batch_size`` samples, drawn from its own generator).

    The data sharding rule: global micro-batch g is run by rank ``g % world`` as its micro-batch
    ``g // world``. So 2 processes with ``grad_accum`` a equal 1 process with ``grad_accum`` 2a, sample
    for sample (same indices, noise, timesteps, label dropout): the union of the ranks' micro-batches
    is the 1-process batch.
    """
    return micro * world + rank


@dataclass
class RunPlan:
    """What :func:`plan_run` checked and decided before anything is written or trained."""

    cfg: TrainConfig
    prep_dir: Path
    run_dir: Path
    prep: Any  # neurodit.data.prepare.Prepared
    inputs: InputAdapter  # the generator's: network preset, tiling spec, codec, standardizer
    labels: LabelSpec
    class_ids: np.ndarray  # (N,) int64, one per prepared volume
    checkpoints: list[tuple[int, Path]]  # to resume from (empty for a fresh run)


def plan_run(cfg: TrainConfig) -> RunPlan:
    """Step 1: check the prepared data against the generator's network (its input adapter's
    ``plan``: preset, grid, tiling), build labels, and clear (or check for resuming) the run folder.
    Raises NeuroditError before any file is written."""
    from neurodit.data.prepare import load_prepared

    if not cfg.prep_dir or not cfg.out:
        raise NeuroditError("train: prep_dir and out must be set")
    if not is_diffusion(cfg.generator):
        raise NeuroditError(f"train: generator '{cfg.generator}' is not a diffusion generator "
                            f"({', '.join(diffusion_names())}); fit it through neurodit.generators")
    prep_dir, run_dir = Path(cfg.prep_dir), Path(cfg.out)
    prep = load_prepared(prep_dir)
    inputs = get_generator(cfg.generator).inputs.plan(cfg, prep, prep_dir)
    labels, class_ids = make_labels(prep.table, cfg.label, cfg.age_bins, prep_dir / "participants.tsv")
    ckpts = _prepare_run_dir(cfg, run_dir)
    return RunPlan(cfg=cfg, prep_dir=prep_dir, run_dir=run_dir, prep=prep, inputs=inputs,
                   labels=labels, class_ids=class_ids, checkpoints=ckpts)


def process_state():
    """accelerate's ``PartialState`` (device, process index, main process): what the steps before the
    precision is chosen need; :func:`make_accelerator` then builds on the same state."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(cfg: TrainConfig, run_dir: Path, mp: str):
    """The accelerate ``Accelerator`` in precision ``mp`` (accelerate's name, from :func:`choose_step_settings`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    device_cpu = not torch.cuda.is_available()
    # accelerate keeps one precision per process; a second run in this process (compare, bench, tests) may
    # have timed another: the finished run's precision state is dropped (the process state is kept)
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mp:
        AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, cpu=device_cpu,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")))
    return accelerator


def set_up_run_folder(plan: RunPlan, accelerator) -> None:
    """Step 2: the run-folder files a sampler needs (``neurodit.runs``), written by the main process."""
    if accelerator.is_main_process:
        write_run_files(plan.run_dir, config=to_dict(plan.cfg), labels=plan.labels,
                        class_ids=plan.class_ids, prep_dir=plan.prep_dir, mask=plan.prep.mask,
                        spec=plan.inputs.spec, preset=plan.inputs.preset, generator=plan.cfg.generator)
    accelerator.wait_for_everyone()


def build_model(plan: RunPlan) -> torch.nn.Module:
    """Step 3: the generator's network for the run's classes (+ the null class), fresh or from
    ``cfg.init`` (``InputAdapter.build_model``: a DiT of the preset, or ``neurodit.models.unet3d.UNet3D``)."""
    return plan.inputs.build_model(plan.cfg, plan.labels.num_classes)


def build_inputs(plan: RunPlan, device: torch.device, rank: int = 0, vae=None) -> torch.Tensor:
    """Step 4: the raw model inputs (N, C, *spatial) on ``device`` (``InputAdapter.encode_raw`` of the
    prepared volumes), computed once and cached in ``RUN_DIR/cache`` when the adapter says they are
    worth it: (N, 1, S, S) mosaics [or (N, 4, S/8, S/8) latents: ``vae`` (tests) or the preset's];
    (N, 1, D, H, W) volumes are not cached.
    """
    adapter, prep = plan.inputs, plan.prep
    adapter.attach_codec(device, vae)
    identity = adapter.cache_identity()
    if identity is None:
        return adapter.encode_raw(prep.volumes).to(device)
    prep_meta = read_json(plan.prep_dir / "prepare.json")
    key = cache_key(checksums=prep_meta.get("checksums"), n=len(prep), **identity)
    name = "inputs.safetensors" if rank == 0 else f"inputs-{rank}.safetensors"
    cache_file = plan.run_dir / "cache" / name
    inputs = load_or_build_inputs(cache_file, key, lambda: adapter.encode_raw(prep.volumes)).to(device)
    if tuple(inputs.shape[1:]) != adapter.input_shape:
        raise NeuroditError(f"cached inputs {tuple(inputs.shape)} do not fit the network's input "
                            f"{adapter.input_shape}", cache_file)
    return inputs


def standardize_inputs(plan: RunPlan, inputs: torch.Tensor, accelerator) -> torch.Tensor:
    """Step 4b (``cfg.standardize`` pixel / highpass): fit the per-pixel standardizer on the raw inputs,
    save it (``standardize.safetensors``) and return the standardized inputs; else the inputs as they are.
    Every rank fits the same numbers from the same inputs."""
    cfg = plan.cfg
    if cfg.standardize == "none":
        return inputs
    inputs = plan.inputs.fit_standardizer(inputs, cfg.standardize, cfg.standardize_floor)
    if accelerator.is_main_process:
        save_standardizer(plan.run_dir, plan.inputs.standardizer)
    return inputs


def _resumed_precision(plan: RunPlan) -> str | None:
    """The precision recorded by the newest checkpoint a resumed run may go on from (None: a fresh run, or
    no record; :func:`restore` itself decides which checkpoint is sound)."""
    if not plan.cfg.resume:
        return None
    for _, ckpt in reversed(_checkpoints(plan.run_dir)):
        try:
            return ckpt_io.saved_precision(ckpt)
        except (OSError, ValueError):
            continue
    return None


def choose_step_settings(cfg: TrainConfig, model: torch.nn.Module, process: Diffusion, inputs: torch.Tensor,
                         targets: torch.Tensor, world: int = 1,
                         resumed: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 4c: the CPU intra-op threads and the precision of the run, each by timing a few bare steps
    of a copy of the network on the first batch (B, C, *spatial), so the run's model, optimiser and
    random streams are untouched. Returns what ``run.json`` records as ``thread_choice`` and
    ``precision_choice`` (the latter's ``precision`` in accelerate's names: ``no`` = fp32).

    Threads: ``cfg.num_threads`` when set, else the faster of all cores and 1 (``neurodit.optim.pick_threads``).
    Precision: with ``mixed_precision: auto`` on a CPU whose torch kernels have bf16 (AVX-512 / AMX), bf16
    and fp32 timed at the chosen threads (``neurodit.optim.pick_fastest``: bf16 stays unless fp32 is more
    than 10 % faster, so that near-equal timings do not flip a run's numerics; an AVX-512 CPU without native
    bf16 emulates it, and there fp32 wins); elsewhere no trial: a set
    precision is the user's, a CPU held to AVX2 kernels emulates bf16 (2.4 GFLOP/s against 220 fp32 on
    the 2-core EPYC, ``neurodit bench``), a GPU gets ``mixed_precision_for``'s choice, and ``world`` > 1
    processes keep it too (each would time its own and they must agree). ``resumed``: the precision of the
    checkpoint a resumed run goes on from, kept (a resumed run equals the uninterrupted one)."""
    cpu = inputs.device.type == "cpu"
    candidate = mixed_precision_for(cfg.mixed_precision, inputs.device.type)
    pick = torch.arange(cfg.batch_size, device=inputs.device) % inputs.shape[0]
    trial: list[torch.nn.Module] = []  # the copy, made only when something is timed (a GPU run copies nothing)

    def step_at(mp: str):
        trial[:] = trial or [copy.deepcopy(model)]
        return bare_step(trial[0], process, inputs[pick], targets[pick], autocast_dtype(mp),
                         adamw(trial[0].parameters(), lr=cfg.lr))

    with torch.random.fork_rng():
        if cfg.num_threads > 0 or not cpu:
            threads = {"threads": torch.get_num_threads(), "picked_by": "config" if cfg.num_threads else "device"}
        else:
            threads = pick_threads(step_at(candidate))
        if resumed is not None:
            precision = {"precision": resumed, "picked_by": "resume: the checkpoint's"}
        elif cpu and cfg.mixed_precision == "auto" and candidate != "no" and world == 1:
            timed = pick_fastest({candidate: step_at(candidate), "no": step_at("no")}, prefer=candidate)
            precision = {"precision": timed.pop("pick"), **timed}
        else:
            why = ("config" if cfg.mixed_precision != "auto" else "device" if not cpu
                   else "several processes" if world > 1
                   else "no bf16 kernels on this CPU (torch capability " + torch.backends.cpu.get_cpu_capability() + ")")
            precision = {"precision": candidate, "picked_by": why}
    return threads, precision


def restore(accelerator, model, optimizer, lr_sched, ema,
            plan: RunPlan) -> tuple[int, list[dict[str, Any]], list[float]]:
    """Step 5: load the newest valid checkpoint (model, optimiser, LR scheduler, EMA, RNG, loss rows;
    ``neurodit.train.checkpoint``) if resuming; return ``(step, loss_rows, pending)`` (``pending``: the
    losses of an unfinished log window; ``0, [], []`` for a fresh run).

    A truncated or corrupt newest checkpoint (sha256 in ``state.json``) is skipped with a warning and the
    one before it used; folders half written by a kill (``.step-*.partial``) are removed. Nothing in the
    run folder is unpickled (safetensors, JSON, ``torch.load(weights_only=True)``).
    """
    if not plan.checkpoints:
        return 0, [], []
    accelerator.wait_for_everyone()
    found = ckpt_io.latest_valid(plan.checkpoints, warn=accelerator.is_main_process)
    if found is None:
        raise NeuroditError("--resume: no checkpoint in checkpoints/ passes its checksums "
                            "(see the warnings above)", plan.run_dir / "checkpoints")
    _, path = found
    start, rows, pending = ckpt_io.load(path, model=accelerator.unwrap_model(model), optimizer=optimizer,
                               lr_sched=lr_sched, ema=ema)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ckpt_io.remove_partial(plan.run_dir)
        for step, newer in plan.checkpoints:  # skipped (corrupt) checkpoints newer than the one used
            if step > start:
                shutil.rmtree(newer, ignore_errors=True)
    if start >= plan.cfg.max_steps:
        log.warning("resume: checkpoint step %d >= max_steps %d; nothing to train", start, plan.cfg.max_steps)
    return start, rows, pending


def save_checkpoint(accelerator, model, optimizer, lr_sched, ema, run_dir: Path, step: int,
                    loss_rows: list[dict[str, Any]], keep: int, pending: list[float] | None = None) -> None:
    """``checkpoints/step-NNNNNNN/`` (``neurodit.train.checkpoint.save``: written in a temporary folder,
    renamed into place, sha256 of every file in ``state.json``); keeps the last ``keep`` checkpoints and
    rewrites ``loss.csv``."""
    accelerator.wait_for_everyone()
    final = run_dir / "checkpoints" / f"step-{step:07d}"
    if accelerator.is_main_process:
        ckpt_io.save(final, model=accelerator.unwrap_model(model), optimizer=optimizer, lr_sched=lr_sched,
                     ema=ema, step=step, loss_rows=loss_rows, pending=pending or [], run_dir=run_dir,
                     mixed_precision=accelerator.mixed_precision)
        for _, old in _checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        _write_loss_csv(run_dir / "loss.csv", loss_rows)
    accelerator.wait_for_everyone()


def ema_step(ema, parameters: Iterator[torch.nn.Parameter]) -> None:
    """diffusers ``EMAModel.step`` (its decay schedule and step count, so its checkpoints and ``copy_to`` are
    unchanged) as one fused lerp over all tensors, s <- s + (1 - decay) (p - s): 1.5 ms against 4.4 ms a step
    for the tiny-p32 DiT on 2 AVX2 cores (``_foreach_lerp_``; diffusers' loop and its ``foreach`` path
    allocate a difference per tensor: 4.4 / 5.0 ms)."""
    params = list(parameters)
    ema.optimization_step += 1
    decay = ema.get_decay(ema.optimization_step)
    ema.cur_decay_value = decay
    pairs = [(s, p.detach()) for s, p in zip(ema.shadow_params, params, strict=True) if p.requires_grad]
    frozen = [(s, p.detach()) for s, p in zip(ema.shadow_params, params, strict=True) if not p.requires_grad]
    if pairs:
        torch._foreach_lerp_([s for s, _ in pairs], [p for _, p in pairs], 1.0 - decay)
    for s, p in frozen:
        s.copy_(p)


def train_loop(cfg: TrainConfig, accelerator, model, optimizer, lr_sched, ema, process: Diffusion,
               inputs: torch.Tensor, targets: torch.Tensor, null_class: int, start: int,
               loss_rows: list[dict[str, Any]], run_dir: Path,
               pending: list[float] | None = None) -> tuple[float, list[float]]:
    """Step 6: optimiser steps ``start`` .. ``cfg.max_steps`` (appending to ``loss_rows``, saving
    checkpoints); returns the seconds spent and each step's seconds (checkpoint saves excluded: what
    ``neurodit bench`` sets against the bare step). ``inputs`` (N, C, S, S) mosaics or (N, 1, D, H, W)
    volumes, ``targets`` (N,) class ids; ``pending``: losses of the current log window (from a
    checkpoint between two log steps).

    Each process runs its own micro-batches of the step's global batch (:func:`micro_batch_index`);
    the logged loss is the mean over all processes' micro-batches (``accelerator.reduce``), so the loss
    curve of N processes is the curve of one process with N times the gradient accumulation.
    """
    from tqdm.auto import tqdm

    device, rank, n = accelerator.device, accelerator.process_index, inputs.shape[0]
    world = accelerator.num_processes
    model.train()
    t_start, recent, step_s = time.time(), list(pending or []), []
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc="train",
               disable=not accelerator.is_local_main_process)
    for step in bar:
        t_step = time.perf_counter()
        for micro in range(cfg.grad_accum):
            gen = _seeded(cfg.seed, step, micro_batch_index(micro, rank, world), device)
            with accelerator.accumulate(model):
                idx = torch.randint(0, n, (cfg.batch_size,), generator=gen, device=device)
                x0, y = inputs[idx], targets[idx].clone()  # (B, C, S, S) or (B, 1, D, H, W), (B,)
                # classifier-free guidance: each sample's label -> null class with p = label_dropout
                drop = torch.rand(cfg.batch_size, generator=gen, device=device) < cfg.label_dropout
                y[drop] = null_class
                loss = process.loss(model, x0, y, generator=gen)
                accelerator.backward(loss)
                if micro == cfg.grad_accum - 1 and accelerator.is_main_process:
                    ckpt_io.test_pause("step", step + 1, run_dir)  # mid-step: gradients, no update yet
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
            recent.append(float(accelerator.reduce(loss.detach(), "mean")))
        ema_step(ema, accelerator.unwrap_model(model).parameters())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            mean_loss = float(np.mean(recent))
            recent = []
            lr = float(lr_sched.get_last_lr()[0])
            loss_rows.append({"step": done, "loss": mean_loss, "lr": lr})
            accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=done)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        step_s.append(time.perf_counter() - t_step)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.max_steps:
            save_checkpoint(accelerator, model, optimizer, lr_sched, ema, run_dir, done, loss_rows,
                            cfg.keep_checkpoints, pending=recent)
    seconds = time.time() - t_start
    if cfg.max_steps > start:
        save_checkpoint(accelerator, model, optimizer, lr_sched, ema, run_dir, cfg.max_steps, loss_rows,
                        cfg.keep_checkpoints, pending=recent)
    return seconds, step_s


def export_run(plan: RunPlan, accelerator, model, ema, process: Diffusion, *, mixed_precision: str,
               inputs: torch.Tensor, targets: torch.Tensor, loss_rows: list[dict[str, Any]], start: int,
               train_seconds: float, step_seconds: list[float] | None = None,
               thread_choice: dict[str, Any] | None = None, precision_choice: dict[str, Any] | None = None) -> None:
    """Step 7: EMA weights as a diffusers folder (``model/``; ``UNet3D.save_pretrained`` writes the same
    layout with ``model.safetensors``), ``loss.csv``, previews, ``run.json`` (with the precision and
    threads the loop ran with and its step times: :func:`step_time_summary`)."""
    cfg, run_dir = plan.cfg, plan.run_dir
    if not accelerator.is_main_process:
        return
    steps_run = max(0, cfg.max_steps - start)
    export = copy.deepcopy(accelerator.unwrap_model(model)).float().cpu()
    ema_cpu = copy.deepcopy(ema)
    ema_cpu.to("cpu")
    ema_cpu.copy_to(export.parameters())
    with atomic_dir(run_dir / "model", overwrite=True) as tmp:
        export.save_pretrained(tmp, safe_serialization=True)
    _write_loss_csv(run_dir / "loss.csv", loss_rows)
    preview = render_previews(export.to(accelerator.device), plan.labels, cfg, process, run_dir, plan.inputs,
                              mixed_precision=mixed_precision, real=inputs, real_ids=targets)
    write_run_info(run_dir, to_dict(cfg), cfg.seed, generator=cfg.generator,
                   preset=plan.inputs.preset.to_dict(), labels=plan.labels.to_dict(),
                   steps_trained=steps_run, resumed_from=start, mixed_precision=mixed_precision,
                   train_seconds=round(train_seconds, 2),
                   seconds_per_step=round(train_seconds / steps_run, 4) if steps_run else None,
                   final_loss=loss_rows[-1]["loss"] if loss_rows else None,
                   num_params=sum(p.numel() for p in export.parameters()), previews=preview,
                   processes=accelerator.num_processes, threads=torch.get_num_threads(),
                   thread_choice=thread_choice, precision_choice=precision_choice,
                   step_seconds=step_time_summary(step_seconds or []))


def step_time_summary(step_s: list[float], warmup: int = 2) -> dict[str, Any] | None:
    """Median, min and max of the loop's step seconds after the first ``warmup`` steps (allocator and
    kernel set-up), and the first step's: ``neurodit bench`` reads the median as the loop's speed."""
    if not step_s:
        return None
    steady = step_s[warmup:] or step_s
    return {"median": round(float(np.median(steady)), 4), "min": round(min(steady), 4),
            "max": round(max(steady), 4), "first": round(step_s[0], 4), "n": len(steady)}


def train_diffusion(cfg: TrainConfig, *, vae=None) -> Path:
    """Train the diffusion generator ``cfg.generator`` (the mosaic DiT, the ddpm3d UNet, any generator
    with an input adapter) per ``cfg`` and return RUN_DIR (layout in docs/ARCHITECTURE.md, "Generative core").

    ``vae``: an ``AutoencoderKL`` to use for latent presets instead of loading ``preset.vae`` (tests pass
    a tiny one). Loss: ``neurodit.diffusion``; weights saved to ``model/`` are the EMA weights
    (diffusers ``EMAModel``), loadable with ``DiTTransformer2DModel.from_pretrained`` (dit) or
    ``neurodit.models.unet3d.UNet3D.from_pretrained`` (ddpm3d).
    """
    from diffusers.training_utils import EMAModel

    plan = plan_run(cfg)
    with process_settings(cfg.num_threads):
        state = process_state()  # the Accelerator itself waits for the precision (step 4c)
        torch.manual_seed(cfg.seed)  # model init; data/noise use per-step generators (_seeded)
        # the model (and any --init file) first: a bad --init leaves no started run folder behind
        model = build_model(plan)
        set_up_run_folder(plan, state)
        device = state.device
        inputs = build_inputs(plan, device, state.process_index, vae)
        inputs = standardize_inputs(plan, inputs, state)  # (N, C, *spatial) network space
        targets = torch.from_numpy(plan.class_ids).to(device)

        process = create_diffusion(cfg.diffusion)
        resumed = _resumed_precision(plan)
        threads, precision = choose_step_settings(cfg, model, process, inputs, targets, state.num_processes,
                                                  resumed)
        mp = precision["precision"]
        accelerator = make_accelerator(cfg, plan.run_dir, mp)
        optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # accelerate steps a prepared scheduler once per process per optimiser step: s // world is the
        # optimiser step, so N processes follow the 1-process schedule exactly
        warm, world = max(1, cfg.warmup_steps), accelerator.num_processes
        lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s // world + 1) / warm))
        ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=False)
        model, optimizer, lr_sched = accelerator.prepare(model, optimizer, lr_sched)
        ema.to(device)
        start, loss_rows, pending = restore(accelerator, model, optimizer, lr_sched, ema, plan)
        if accelerator.is_main_process:
            accelerator.init_trackers("neurodit", config={k: v for k, v in to_dict(cfg).items()
                                                          if isinstance(v, (int, float, str, bool))})

        seconds, step_s = train_loop(cfg, accelerator, model, optimizer, lr_sched, ema, process, inputs, targets,
                             plan.labels.null_class, start, loss_rows, plan.run_dir, pending)
        export_run(plan, accelerator, model, ema, process, mixed_precision=mp, inputs=inputs,
                   targets=targets, loss_rows=loss_rows, start=start, train_seconds=seconds,
                   step_seconds=step_s, thread_choice=threads, precision_choice=precision)
        accelerator.end_training()
    return plan.run_dir


@torch.no_grad()
def render_previews(model, labels: LabelSpec, cfg: TrainConfig, process: Diffusion, run_dir: Path,
                    adapter: InputAdapter, *, mixed_precision: str, real: torch.Tensor,
                    real_ids: torch.Tensor) -> dict[str, Any]:
    """Sample ``preview_per_class`` inputs per class and render them (and real ones) as mosaics to
    samples/*.png (``adapter.preview_mosaics``: volume models' outputs are tiled, latents decoded).
    ``real`` (N, C, *spatial) and the samples are in the network's (standardized, when the run is) space."""
    from neurodit.generators.inputs import run_maps
    from neurodit.mosaic_files import save_mosaic_png

    if cfg.preview_per_class == 0:
        return {}
    device = next(model.parameters()).device
    model.eval()
    ids = torch.arange(labels.num_classes, device=device).repeat_interleave(cfg.preview_per_class)
    shape = tuple(real.shape[1:])
    x = process.sample(model, ids, labels.null_class, shape, kind=cfg.sampler, steps=cfg.preview_steps,
                       guidance=cfg.guidance, generator=_seeded(cfg.seed, 0, 0, device),
                       autocast_dtype=autocast_dtype(mixed_precision))
    mos = adapter.preview_mosaics(x, clamp=True)  # (B, 1, M, M)
    # the same number of real mosaics per class, for a side-by-side look
    pick = torch.cat([torch.nonzero(real_ids == k)[: cfg.preview_per_class, 0]
                      for k in range(labels.num_classes)])
    real_mos = adapter.preview_mosaics(real[pick], clamp=False)
    titles = [labels.classes[int(k)] for k in ids]
    out = run_dir / "samples"
    real_titles = [labels.classes[int(real_ids[i])] for i in pick]
    # several maps (MD, FA, ...): preview.png / real.png show the first, preview_<map>.png the others
    names = run_maps(run_dir) or (None,)
    for c, name in enumerate(names):
        tail = f"_{name}" if c else ""
        save_mosaic_png(mos[:, c].cpu(), out / f"preview{tail}.png", vmin=-1.0, vmax=1.0, titles=titles)
        save_mosaic_png(real_mos[:, c].cpu(), out / f"real{tail}.png", vmin=-1.0, vmax=1.0, titles=real_titles)
    mse_to_mean = float(((mos.mean(0) - real_mos.float().mean(0)) ** 2).mean()) if len(pick) else math.nan
    return {"preview": str(out / "preview.png"), "real": str(out / "real.png"),
            "preview_mean_mse_to_real_mean": mse_to_mean}

