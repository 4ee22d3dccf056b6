"""``train_dit``: finetune (or train) a class-conditional DiT on cached MD mosaics with accelerate.

Chattopadhyay et al. 2025 finetune DiT (Peebles & Xie 2023) on 2D mosaics tiled from 3D MD maps.
One loop for every preset: pixel presets regress mosaics directly, latent presets (DiT-XL/2) regress
SD-VAE latents of the mosaics. ``accelerate launch -m neurodit.cli train ...`` runs the same code on
several GPUs (each process draws its own batches; gradients are all-reduced by accelerate).
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from neurodit.config import to_dict
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_text, read_json, write_json, write_run_info
from neurodit.train.config import TrainConfig
from neurodit.train.data import LabelSpec, cache_key, load_or_build_inputs, make_labels
from neurodit.train.diffusion import diffusion_loss, guided_sample, make_noise_scheduler, make_sampler

log = logging.getLogger(__name__)

# Fields that define what a run learns: a resumed run must agree on all of them.
_IDENTITY = ("preset", "preset_overrides", "label", "age_bins", "diffusion", "init")


def mixed_precision_for(choice: str, device_type: str) -> str:
    """Resolve ``auto``: bf16 on CUDA with bf16 support or on CPUs with AVX-512/AMX (FACTS.md: 1.6x
    faster on our CPUs), else full precision."""
    if choice == "fp32":
        return "no"  # accelerate's name for full precision
    if choice != "auto":
        return choice
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    return "bf16" if ("AVX512" in cap or "AMX" in cap) else "no"


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
    out = []
    for p in (run_dir / "checkpoints").glob("step-*"):
        if p.is_dir() and (p / "state.json").is_file():
            try:
                out.append((int(p.name.split("-")[1]), p))
            except ValueError:
                continue
    return sorted(out)


def _read_loss_csv(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as fh:
        return [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"])}
                for r in csv.DictReader(fh) if int(r["step"]) <= upto]


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
        now = to_dict(cfg)
        diff = [k for k in _IDENTITY if saved.get(k) != now.get(k)]
        if diff:
            raise NeuroditError(f"--resume: {', '.join(diff)} differ from the run's train_config.yaml "
                                f"({', '.join(f'{k}: {saved.get(k)!r} vs {now.get(k)!r}' for k in diff)})",
                                run_dir / "train_config.yaml")
        return ckpts
    if run_dir.exists() and any(run_dir.iterdir()):
        started_only = ((run_dir / "train_config.yaml").is_file() and not (run_dir / "model").exists()
                        and not (run_dir / "run.json").exists())
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


def _seeded(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    # One generator per (seed, step, rank): batches, noise, timesteps and label dropout of step k are
    # the same whether or not the run was interrupted and resumed before k.
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_176 + rank * 7_919) % (2**63 - 1))
    return g


def train_dit(cfg: TrainConfig, *, vae=None) -> Path:
    """Train a DiT per ``cfg`` and return RUN_DIR (layout in docs/ARCHITECTURE.md, "Generative core").

    ``vae``: an ``AutoencoderKL`` to use for latent presets instead of loading ``preset.vae`` (tests pass
    a tiny one). Loss: ``neurodit.train.diffusion.diffusion_loss``; weights saved to ``model/`` are the
    EMA weights (diffusers ``EMAModel``), loadable with ``DiTTransformer2DModel.from_pretrained``.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from neurodit.data.prepare import load_prepared
    from neurodit.models import LatentCodec, build_dit, load_preset, load_vae
    from neurodit.models.dit import disable_label_dropout
    from neurodit.tiling import make_spec, volume_to_mosaic

    if not cfg.prep_dir or not cfg.out:
        raise NeuroditError("train: prep_dir and out must be set")
    prep_dir, run_dir = Path(cfg.prep_dir), Path(cfg.out)
    prep = load_prepared(prep_dir)
    preset = load_preset(cfg.preset, cfg.preset_overrides or None)
    check_grid(prep, preset, prep_dir)
    spec = make_spec(prep.grid.shape, axis=preset.axis, fill=-1.0, affine=prep.grid.affine)
    if spec.mosaic_shape != (preset.mosaic_size, preset.mosaic_size):
        raise NeuroditError(f"tiling gives a {spec.mosaic_shape} mosaic but preset '{preset.name}' "
                            f"expects {preset.mosaic_size}^2")
    labels, class_ids = make_labels(prep.table, cfg.label, cfg.age_bins, prep_dir / "participants.tsv")
    ckpts = _prepare_run_dir(cfg, run_dir)

    if cfg.num_threads:
        # on a CPU shared with other jobs, OpenMP threads that wait for each other cost more than they
        # give (measured: 5 s/step with 2 threads vs 1.1 s/step with 1 on a loaded 2-core machine)
        torch.set_num_threads(cfg.num_threads)
    device_cpu = not torch.cuda.is_available()
    mp = mixed_precision_for(cfg.mixed_precision, "cpu" if device_cpu else "cuda")
    accelerator = Accelerator(
        mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, cpu=device_cpu,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")))
    device, rank = accelerator.device, accelerator.process_index
    torch.manual_seed(cfg.seed)  # model init; data/noise use per-step generators (_seeded)

    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "train_config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "labels.json", {**labels.to_dict(),
                                             "counts": np.bincount(class_ids, minlength=labels.num_classes)})
        shutil.copyfile(prep_dir / "prepare.json", run_dir / "prepare.json")
        # the brain mask turns sampled background to exactly 0 mm2/s, as in the inputs
        np.save(run_dir / "mask.npy", np.asarray(prep.mask, dtype=bool))
        write_json(run_dir / "tiling.json", spec.to_dict())
        write_json(run_dir / "preset.json", preset.to_dict())
    accelerator.wait_for_everyone()

    # ---- model
    if cfg.init:
        from neurodit.models import load_init

        model = load_init(cfg.init, preset, labels.num_classes, seed=cfg.seed)
    else:
        model = build_dit(preset, labels.num_classes)
    disable_label_dropout(model)  # we drop labels ourselves, once per sample (FACTS.md)

    # ---- inputs, computed once: (N, D, H, W) volumes -> (N, 1, S, S) mosaics [-> (N, 4, S/8, S/8)]
    codec = None
    if preset.space == "latent":
        if vae is None:
            if not preset.vae:
                raise NeuroditError(f"preset '{preset.name}' is latent but names no vae")
            vae = load_vae(preset.vae, preset.vae_subfolder)
        codec = LatentCodec(vae.to(device), scale=preset.latent_scale)
    prep_meta = read_json(prep_dir / "prepare.json")
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

    cache_file = run_dir / "cache" / ("inputs.safetensors" if rank == 0 else f"inputs-{rank}.safetensors")
    inputs = load_or_build_inputs(cache_file, key, build).to(device)
    targets = torch.from_numpy(class_ids).to(device)
    n = inputs.shape[0]
    if tuple(inputs.shape[1:]) != (preset.in_channels, preset.sample_size, preset.sample_size):
        raise NeuroditError(f"cached inputs {tuple(inputs.shape)} do not fit preset '{preset.name}'",
                            cache_file)

    # ---- optimisation
    noise_sched = make_noise_scheduler(cfg.diffusion)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.warmup_steps) * accelerator.num_processes  # accelerate steps it once per process
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm))
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=False)
    model, optimizer, lr_sched = accelerator.prepare(model, optimizer, lr_sched)
    ema.to(device)
    # EMA weights go into each checkpoint as safetensors (not accelerate's custom-state pickle, which
    # it loads with weights_only=False): resuming never unpickles anything from the run folder.

    start = 0
    if ckpts:
        step0, last = ckpts[-1]
        accelerator.load_state(str(last))
        state = read_json(last / "state.json")
        start = int(state["step"])
        shadow = load_file(str(last / "ema.safetensors"))
        if len(shadow) != len(ema.shadow_params):
            raise NeuroditError(f"EMA has {len(shadow)} tensors, model {len(ema.shadow_params)}", last)
        with torch.no_grad():
            for i, p in enumerate(ema.shadow_params):
                p.copy_(shadow[str(i)].to(p.device))
        ema.optimization_step = int(state["ema_optimization_step"])
        if start >= cfg.max_steps:
            log.warning("resume: checkpoint step %d >= max_steps %d; nothing to train", start, cfg.max_steps)
    loss_rows = _read_loss_csv(run_dir / "loss.csv", start) if start else []

    if accelerator.is_main_process:
        accelerator.init_trackers("neurodit", config={k: v for k, v in to_dict(cfg).items()
                                                      if isinstance(v, (int, float, str, bool))})

    def save_checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        final = run_dir / "checkpoints" / f"step-{step:07d}"
        if accelerator.is_main_process:
            # save_state writes into a temporary folder renamed into place: no half checkpoint on a crash
            with atomic_dir(final, overwrite=True) as tmp:
                accelerator.save_state(str(tmp), safe_serialization=True)
                save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
                          str(tmp / "ema.safetensors"))
                write_json(tmp / "state.json", {"step": step, "ema_optimization_step": ema.optimization_step})
            for _, old in _checkpoints(run_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            _write_loss_csv(run_dir / "loss.csv", loss_rows)
        accelerator.wait_for_everyone()

    model.train()
    t_start, recent = time.time(), []
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc="train",
               disable=not accelerator.is_local_main_process)
    for step in bar:
        gen = _seeded(cfg.seed, step, rank, device)
        for _ in range(cfg.grad_accum):
            with accelerator.accumulate(model):
                idx = torch.randint(0, n, (cfg.batch_size,), generator=gen, device=device)
                x0, y = inputs[idx], targets[idx].clone()  # (B, C, S, S), (B,)
                # classifier-free guidance: each sample's label -> null class with p = label_dropout
                drop = torch.rand(cfg.batch_size, generator=gen, device=device) < cfg.label_dropout
                y[drop] = labels.null_class
                loss = diffusion_loss(model, x0, y, noise_sched, cfg.diffusion, generator=gen)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
            recent.append(float(loss.detach()))
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
            save_checkpoint(done)
    train_seconds = time.time() - t_start
    steps_run = max(0, cfg.max_steps - start)
    if steps_run:
        save_checkpoint(cfg.max_steps)

    # ---- export EMA weights as a diffusers folder, previews, run.json
    if accelerator.is_main_process:
        export = copy.deepcopy(accelerator.unwrap_model(model)).float().cpu()
        ema_cpu = copy.deepcopy(ema)
        ema_cpu.to("cpu")
        ema_cpu.copy_to(export.parameters())
        with atomic_dir(run_dir / "model", overwrite=True) as tmp:
            export.save_pretrained(tmp, safe_serialization=True)
        _write_loss_csv(run_dir / "loss.csv", loss_rows)
        preview = render_previews(export.to(device), labels, spec, cfg, noise_sched, run_dir, codec,
                                  mixed_precision=mp, real=inputs, real_ids=targets)
        write_run_info(run_dir, to_dict(cfg), cfg.seed, preset=preset.to_dict(), labels=labels.to_dict(),
                       steps_trained=steps_run, resumed_from=start, mixed_precision=mp,
                       train_seconds=round(train_seconds, 2),
                       seconds_per_step=round(train_seconds / steps_run, 4) if steps_run else None,
                       final_loss=loss_rows[-1]["loss"] if loss_rows else None,
                       num_params=sum(p.numel() for p in export.parameters()), previews=preview,
                       processes=accelerator.num_processes)
    accelerator.end_training()
    return run_dir


@torch.no_grad()
def render_previews(model, labels: LabelSpec, spec, cfg: TrainConfig, noise_sched, run_dir: Path, codec,
                    *, mixed_precision: str, real: torch.Tensor, real_ids: torch.Tensor) -> dict[str, Any]:
    """Sample ``preview_per_class`` mosaics per class and render them (and real ones) to samples/*.png."""
    from neurodit.tiling import save_mosaic_png

    if cfg.preview_per_class == 0:
        return {}
    device = next(model.parameters()).device
    model.eval()
    ids = torch.arange(labels.num_classes, device=device).repeat_interleave(cfg.preview_per_class)
    shape = tuple(real.shape[1:])
    dtype = torch.bfloat16 if mixed_precision == "bf16" else (torch.float16 if mixed_precision == "fp16"
                                                              else None)
    x = guided_sample(model, make_sampler(cfg.sampler, noise_sched), ids, labels.null_class, shape,
                      steps=cfg.preview_steps, guidance=cfg.guidance,
                      generator=_seeded(cfg.seed, 0, 0, device), autocast_dtype=dtype)
    mos = codec.decode(x) if codec is not None else x.clamp(-1, 1)  # (B, 1, M, M)
    # the same number of real mosaics per class, for a side-by-side look
    pick = torch.cat([torch.nonzero(real_ids == k)[: cfg.preview_per_class, 0]
                      for k in range(labels.num_classes)])
    real_mos = codec.decode(real[pick]) if codec is not None else real[pick]
    titles = [labels.classes[int(k)] for k in ids]
    out = run_dir / "samples"
    save_mosaic_png(mos[:, 0].cpu(), out / "preview.png", vmin=-1.0, vmax=1.0, titles=titles)
    save_mosaic_png(real_mos[:, 0].cpu(), out / "real.png", vmin=-1.0, vmax=1.0,
                    titles=[labels.classes[int(real_ids[i])] for i in pick])
    mse_to_mean = float(((mos.mean(0) - real_mos.float().mean(0)) ** 2).mean()) if len(pick) else math.nan
    return {"preview": str(out / "preview.png"), "real": str(out / "real.png"),
            "preview_mean_mse_to_real_mean": mse_to_mean}
