"""``train_dit``: finetune (or train) a class-conditional diffusion generator with accelerate: the
mosaic DiT (``generator: dit``) or a 3D diffusion UNet on whole volumes (``generator: ddpm3d``).

Chattopadhyay et al. 2025 finetune DiT (Peebles & Xie 2023) on 2D mosaics tiled from 3D MD maps.
One loop for every preset: pixel presets regress mosaics directly, latent presets (DiT-XL/2) regress
SD-VAE latents of the mosaics. ``accelerate launch -m neurodit.cli train ...`` runs the same code on
several GPUs or CPU processes (each process runs its own micro-batches of the step's global batch,
:func:`micro_batch_index`; gradients are all-reduced by accelerate; README "Multi-GPU and multi-node").
Checkpoints and resume: ``neurodit.train.checkpoint`` (bit-identical resume after ``kill -9``).

``train_dit`` is a short sequence of named steps, each a function of its own (and testable alone):
:func:`plan_run` (inputs checked, run folder cleared or resumed) -> :func:`set_up_run_folder`
(``neurodit.runs.write_run_files``) -> :func:`build_model` -> :func:`build_inputs` (the cache) ->
:func:`restore` (last checkpoint) -> :func:`train_loop` -> :func:`export_run` (EMA weights, previews,
``run.json``). The process (loss, samplers; ddpm or flow) is ``neurodit.diffusion``; process-wide
torch settings are restored on exit (:func:`process_settings`). Only the generator-specific steps
branch on ``cfg.generator``: :func:`plan_run` (grid check), :func:`build_model` (DiT or
``neurodit.models.unet3d.UNet3D``) and :func:`build_inputs` ((N, C, S, S) mosaics or (N, 1, D, H, W)
volumes); the loop, checkpoints, resume, EMA and export are shared.
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
import yaml

from neurodit.config import to_dict
from neurodit.diffusion import Diffusion, autocast_dtype, create_diffusion, mixed_precision_for
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_text, read_json, write_run_info
from neurodit.runs import LabelSpec, make_labels, write_run_files
from neurodit.standardize import Standardizer, fit_standardizer, save_standardizer
from neurodit.train import checkpoint as ckpt_io
from neurodit.train.config import TrainConfig
from neurodit.train.data import cache_key, load_or_build_inputs

GENERATORS = ("dit", "ddpm3d")  # the generators this loop trains (pca is fitted in neurodit.generators)

log = logging.getLogger(__name__)

# Fields that define what a run learns: a resumed run must agree on all of them.
_IDENTITY = ("generator", "preset", "preset_overrides", "label", "age_bins", "diffusion", "unet", "init",
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


def check_grid(prep, preset, prep_dir: Path) -> None:
    """The prepared grid must equal the preset's; else say which ``neurodit prepare`` to run."""
    have, want = tuple(prep.grid.shape), tuple(int(s) for s in preset.grid_shape)
    if have != want:
        try:
            source = read_json(Path(prep_dir) / "prepare.json").get("source", "COHORT_DIR")
        except NeuroditError:
            source = "COHORT_DIR"
        d, h, w = want
        raise NeuroditError(
            f"prepared grid is {'x'.join(map(str, have))} but preset '{preset.name}' needs "
            f"{d}x{h}x{w}: run `neurodit prepare {source} --out {Path(prep_dir)}-{d}x{h}x{w} "
            f"--shape {d} {h} {w}` and train on that folder", prep_dir)


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
        saved = yaml.safe_load((run_dir / "train_config.yaml").read_text())
        try:  # through the dataclass, so keys added since the run was written take their defaults
            from neurodit.config import from_dict

            saved = to_dict(from_dict(TrainConfig, saved))
        except NeuroditError:
            pass
        now = to_dict(cfg)
        diff = [k for k in _IDENTITY if saved.get(k) != now.get(k)]
        if diff:
            raise NeuroditError(f"--resume: {', '.join(diff)} differ from the run's train_config.yaml "
                                f"({', '.join(f'{k}: {saved.get(k)!r} vs {now.get(k)!r}' for k in diff)})",
                                run_dir / "train_config.yaml")
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
        if not (run_dir / "train_config.yaml").is_file():
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
    preset: Any  # neurodit.models.ModelPreset (dit) or neurodit.models.unet3d.UNet3DConfig (ddpm3d)
    spec: Any  # neurodit.tiling.TilingSpec
    labels: LabelSpec
    class_ids: np.ndarray  # (N,) int64, one per prepared volume
    checkpoints: list[tuple[int, Path]]  # to resume from (empty for a fresh run)


def plan_run(cfg: TrainConfig) -> RunPlan:
    """Step 1: check the prepared data against the preset, build labels and tiling, and clear (or
    check for resuming) the run folder. Raises NeuroditError before any file is written."""
    from neurodit.data.prepare import load_prepared
    from neurodit.models import load_preset
    from neurodit.tiling import make_spec

    if not cfg.prep_dir or not cfg.out:
        raise NeuroditError("train: prep_dir and out must be set")
    if cfg.generator not in GENERATORS:
        raise NeuroditError(f"train: generator '{cfg.generator}' is not a diffusion generator "
                            f"({', '.join(GENERATORS)}); fit it through neurodit.generators")
    prep_dir, run_dir = Path(cfg.prep_dir), Path(cfg.out)
    prep = load_prepared(prep_dir)
    if cfg.generator == "ddpm3d":
        # the UNet runs on whole volumes; the tiling only renders preview mosaics
        cfg.unet.check_grid(prep.grid.shape, prep_dir)
        preset = cfg.unet
        spec = make_spec(prep.grid.shape, axis=2, fill=-1.0, affine=prep.grid.affine)
    else:
        preset = load_preset(cfg.preset, cfg.preset_overrides or None)
        check_grid(prep, preset, prep_dir)
        spec = make_spec(prep.grid.shape, axis=preset.axis, fill=-1.0, affine=prep.grid.affine)
    if cfg.generator == "dit" and spec.mosaic_shape != (preset.mosaic_size, preset.mosaic_size):
        raise NeuroditError(f"tiling gives a {spec.mosaic_shape} mosaic but preset '{preset.name}' "
                            f"expects {preset.mosaic_size}^2")
    labels, class_ids = make_labels(prep.table, cfg.label, cfg.age_bins, prep_dir / "participants.tsv")
    ckpts = _prepare_run_dir(cfg, run_dir)
    return RunPlan(cfg=cfg, prep_dir=prep_dir, run_dir=run_dir, prep=prep, preset=preset, spec=spec,
                   labels=labels, class_ids=class_ids, checkpoints=ckpts)


def make_accelerator(cfg: TrainConfig, run_dir: Path):
    """The accelerate ``Accelerator`` (precision from ``mixed_precision_for``) and that precision."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    device_cpu = not torch.cuda.is_available()
    mp = mixed_precision_for(cfg.mixed_precision, "cpu" if device_cpu else "cuda")
    accelerator = Accelerator(
        mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, cpu=device_cpu,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")))
    return accelerator, mp


def set_up_run_folder(plan: RunPlan, accelerator) -> None:
    """Step 2: the run-folder files a sampler needs (``neurodit.runs``), written by the main process."""
    if accelerator.is_main_process:
        write_run_files(plan.run_dir, config=to_dict(plan.cfg), labels=plan.labels,
                        class_ids=plan.class_ids, prep_dir=plan.prep_dir, mask=plan.prep.mask,
                        spec=plan.spec, preset=plan.preset, generator=plan.cfg.generator)
    accelerator.wait_for_everyone()


def build_model(cfg: TrainConfig, preset, num_classes: int) -> torch.nn.Module:
    """Step 3: a fresh DiT for ``preset``, or ``cfg.init``'s weights adapted to it; label dropout off
    inside the model (we drop labels ourselves, once per sample: diffusers' per-block dropout would
    let different blocks see different labels in one forward). ddpm3d: a fresh ``UNet3D`` of
    ``cfg.unet`` with ``num_classes`` + 1 class embeddings (the last one the null class)."""
    from neurodit.models import build_dit
    from neurodit.models.dit import disable_label_dropout

    if cfg.generator == "ddpm3d":
        from neurodit.models.unet3d import UNet3D

        if cfg.init:
            raise NeuroditError("train: --init (pretrained DiT weights) applies to generator dit only")
        return UNet3D(cfg.unet, num_classes)

    if cfg.init:
        from neurodit.models import load_init

        model = load_init(cfg.init, preset, num_classes, seed=cfg.seed)
    else:
        model = build_dit(preset, num_classes)
    disable_label_dropout(model)
    return model


def build_inputs(plan: RunPlan, device: torch.device, rank: int = 0, vae=None):
    """Step 4: the model inputs, computed once and cached in ``RUN_DIR/cache``.

    (N, D, H, W) volumes -> (N, 1, S, S) mosaics [-> (N, 4, S/8, S/8) latents for latent presets];
    ddpm3d: the volumes themselves, (N, 1, D, H, W) (nothing to compute, so nothing cached).
    Returns ``(inputs on device, codec or None)``.
    """
    from neurodit.models import LatentCodec, load_vae
    from neurodit.tiling import volume_to_mosaic

    preset, spec, prep = plan.preset, plan.spec, plan.prep
    if plan.cfg.generator == "ddpm3d":
        vols = torch.from_numpy(np.array(prep.volumes, dtype=np.float32))[:, None]  # (N, 1, D, H, W)
        return vols.to(device), None
    codec = None
    if preset.space == "latent":
        if vae is None:
            if not preset.vae:
                raise NeuroditError(f"preset '{preset.name}' is latent but names no vae")
            vae = load_vae(preset.vae, preset.vae_subfolder)
        codec = LatentCodec(vae.to(device), scale=preset.latent_scale)
    prep_meta = read_json(plan.prep_dir / "prepare.json")
    key = cache_key(checksums=prep_meta.get("checksums"), n=len(prep), tiling=spec.to_dict(),
                    space=preset.space, vae=preset.vae if vae is None else "given",
                    scale=preset.latent_scale, vae_params=(sum(p.numel() for p in vae.parameters())
                                                           if vae is not None else 0))

    def build() -> torch.Tensor:
        vols = np.asarray(prep.volumes, dtype=np.float32)  # (N, D, H, W) model range
        mosaics = torch.from_numpy(np.ascontiguousarray(volume_to_mosaic(vols, spec)))[:, None]
        if codec is None:
            return mosaics  # (N, 1, S, S)
        return codec.encode(mosaics.to(device)).cpu()  # (N, 4, S/8, S/8)

    name = "inputs.safetensors" if rank == 0 else f"inputs-{rank}.safetensors"
    cache_file = plan.run_dir / "cache" / name
    inputs = load_or_build_inputs(cache_file, key, build).to(device)
    if tuple(inputs.shape[1:]) != (preset.in_channels, preset.sample_size, preset.sample_size):
        raise NeuroditError(f"cached inputs {tuple(inputs.shape)} do not fit preset '{preset.name}'",
                            cache_file)
    return inputs, codec


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
                     ema=ema, step=step, loss_rows=loss_rows, pending=pending or [], run_dir=run_dir)
        for _, old in _checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        _write_loss_csv(run_dir / "loss.csv", loss_rows)
    accelerator.wait_for_everyone()


def train_loop(cfg: TrainConfig, accelerator, model, optimizer, lr_sched, ema, process: Diffusion,
               inputs: torch.Tensor, targets: torch.Tensor, null_class: int, start: int,
               loss_rows: list[dict[str, Any]], run_dir: Path, pending: list[float] | None = None) -> float:
    """Step 6: optimiser steps ``start`` .. ``cfg.max_steps`` (appending to ``loss_rows``, saving
    checkpoints); returns the seconds spent. ``inputs`` (N, C, S, S) mosaics or (N, 1, D, H, W)
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
    t_start, recent = time.time(), list(pending or [])
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc="train",
               disable=not accelerator.is_local_main_process)
    for step in bar:
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
        ema.step(accelerator.unwrap_model(model).parameters())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            mean_loss = float(np.mean(recent))
            recent = []
            lr = float(lr_sched.get_last_lr()[0])
            loss_rows.append({"step": done, "loss": mean_loss, "lr": lr})
            accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=done)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.max_steps:
            save_checkpoint(accelerator, model, optimizer, lr_sched, ema, run_dir, done, loss_rows,
                            cfg.keep_checkpoints, pending=recent)
    seconds = time.time() - t_start
    if cfg.max_steps > start:
        save_checkpoint(accelerator, model, optimizer, lr_sched, ema, run_dir, cfg.max_steps, loss_rows,
                        cfg.keep_checkpoints, pending=recent)
    return seconds


def export_run(plan: RunPlan, accelerator, model, ema, process: Diffusion, codec, *, mixed_precision: str,
               inputs: torch.Tensor, targets: torch.Tensor, loss_rows: list[dict[str, Any]], start: int,
               train_seconds: float, standardizer: Standardizer | None = None) -> None:
    """Step 7: EMA weights as a diffusers folder (``model/``; ``UNet3D.save_pretrained`` writes the same
    layout with ``model.safetensors``), ``loss.csv``, previews, ``run.json``."""
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
    preview = render_previews(export.to(accelerator.device), plan.labels, cfg, process, run_dir, codec,
                              mixed_precision=mixed_precision, real=inputs, real_ids=targets, spec=plan.spec,
                              standardizer=standardizer)
    write_run_info(run_dir, to_dict(cfg), cfg.seed, generator=cfg.generator, preset=plan.preset.to_dict(),
                   labels=plan.labels.to_dict(),
                   steps_trained=steps_run, resumed_from=start, mixed_precision=mixed_precision,
                   train_seconds=round(train_seconds, 2),
                   seconds_per_step=round(train_seconds / steps_run, 4) if steps_run else None,
                   final_loss=loss_rows[-1]["loss"] if loss_rows else None,
                   num_params=sum(p.numel() for p in export.parameters()), previews=preview,
                   processes=accelerator.num_processes)


def train_dit(cfg: TrainConfig, *, vae=None) -> Path:
    """Train ``cfg.generator`` (a DiT, or the ddpm3d UNet) per ``cfg`` and return RUN_DIR (layout in
    docs/ARCHITECTURE.md, "Generative core").

    ``vae``: an ``AutoencoderKL`` to use for latent presets instead of loading ``preset.vae`` (tests pass
    a tiny one). Loss: ``neurodit.diffusion``; weights saved to ``model/`` are the EMA weights
    (diffusers ``EMAModel``), loadable with ``DiTTransformer2DModel.from_pretrained`` (dit) or
    ``neurodit.models.unet3d.UNet3D.from_pretrained`` (ddpm3d).
    """
    from diffusers.training_utils import EMAModel

    plan = plan_run(cfg)
    with process_settings(cfg.num_threads):
        accelerator, mp = make_accelerator(cfg, plan.run_dir)
        torch.manual_seed(cfg.seed)  # model init; data/noise use per-step generators (_seeded)
        # the model (and any --init file) first: a bad --init leaves no started run folder behind
        model = build_model(cfg, plan.preset, plan.labels.num_classes)
        set_up_run_folder(plan, accelerator)
        device = accelerator.device
        inputs, codec = build_inputs(plan, device, accelerator.process_index, vae)
        standardizer = None
        if cfg.standardize != "none":  # every rank fits the same numbers from the same inputs
            standardizer = fit_standardizer(inputs, cfg.standardize_floor, cfg.standardize)
            if accelerator.is_main_process:
                save_standardizer(plan.run_dir, standardizer)
            inputs = standardizer.apply(inputs)  # (N, C, ...) model range -> standardized
        targets = torch.from_numpy(plan.class_ids).to(device)

        process = create_diffusion(cfg.diffusion)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
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

        seconds = train_loop(cfg, accelerator, model, optimizer, lr_sched, ema, process, inputs, targets,
                             plan.labels.null_class, start, loss_rows, plan.run_dir, pending)
        export_run(plan, accelerator, model, ema, process, codec, mixed_precision=mp, inputs=inputs,
                   targets=targets, loss_rows=loss_rows, start=start, train_seconds=seconds,
                   standardizer=standardizer)
        accelerator.end_training()
    return plan.run_dir


@torch.no_grad()
def render_previews(model, labels: LabelSpec, cfg: TrainConfig, process: Diffusion, run_dir: Path, codec,
                    *, mixed_precision: str, real: torch.Tensor, real_ids: torch.Tensor,
                    spec=None, standardizer: Standardizer | None = None) -> dict[str, Any]:
    """Sample ``preview_per_class`` mosaics per class and render them (and real ones) to samples/*.png.

    Volume models (inputs (N, 1, D, H, W)) are tiled with ``spec`` for the same mosaic PNGs. ``real``
    and the samples are in the model's (standardized, when ``standardizer``) space."""
    from neurodit.mosaic_files import save_mosaic_png
    from neurodit.tiling import volume_to_mosaic

    if cfg.preview_per_class == 0:
        return {}
    device = next(model.parameters()).device
    model.eval()
    ids = torch.arange(labels.num_classes, device=device).repeat_interleave(cfg.preview_per_class)
    shape = tuple(real.shape[1:])
    x = process.sample(model, ids, labels.null_class, shape, kind=cfg.sampler, steps=cfg.preview_steps,
                       guidance=cfg.guidance, generator=_seeded(cfg.seed, 0, 0, device),
                       autocast_dtype=autocast_dtype(mixed_precision))
    def as_mosaic(v: torch.Tensor) -> torch.Tensor:  # (B, 1, D, H, W) -> (B, 1, M, M); mosaics as they are
        return volume_to_mosaic(v[:, 0], spec)[:, None] if v.dim() == 5 else v

    unstd = standardizer.invert if standardizer is not None else (lambda v: v)
    x = as_mosaic(unstd(x))
    mos = codec.decode(x) if codec is not None else x.clamp(-1, 1)  # (B, 1, M, M)
    # the same number of real mosaics per class, for a side-by-side look
    pick = torch.cat([torch.nonzero(real_ids == k)[: cfg.preview_per_class, 0]
                      for k in range(labels.num_classes)])
    real_raw = unstd(real[pick])
    real_mos = codec.decode(real_raw) if codec is not None else as_mosaic(real_raw)
    titles = [labels.classes[int(k)] for k in ids]
    out = run_dir / "samples"
    save_mosaic_png(mos[:, 0].cpu(), out / "preview.png", vmin=-1.0, vmax=1.0, titles=titles)
    save_mosaic_png(real_mos[:, 0].cpu(), out / "real.png", vmin=-1.0, vmax=1.0,
                    titles=[labels.classes[int(real_ids[i])] for i in pick])
    mse_to_mean = float(((mos.mean(0) - real_mos.float().mean(0)) ** 2).mean()) if len(pick) else math.nan
    return {"preview": str(out / "preview.png"), "real": str(out / "real.png"),
            "preview_mean_mse_to_real_mean": mse_to_mean}


train_diffusion = train_dit  # the same loop for every diffusion generator
