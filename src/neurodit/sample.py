"""``sample_diffusion``: draw synthetic 3D MD volumes from a trained diffusion run (any generator with
an input adapter: ``dit``, ``ddpm3d``) and write them as a cohort. ``neurodit sample`` goes through
``neurodit.generators.base.sample``, which picks the run's generator and, for diffusion runs, lands here.

Classifier-free guidance (Ho & Salimans 2022) with our own loop over a diffusers scheduler
(``neurodit.diffusion``); the run folder is opened by ``neurodit.runs.TrainedRun``; each model output is
turned back into a volume by the run's input adapter (``neurodit.generators.inputs``: un-standardized,
decoded for latent presets, untiled for mosaics), mapped back to mm²/s and set to 0 outside the
training brain mask (``neurodit.data.prepare.model_to_mm2s``) and written as NIfTI on
the prepare grid's affine. The output folder is a cohort folder (docs/ARCHITECTURE.md, "Input
format") that ``neurodit prepare`` accepts.

Sharded over processes (``accelerate launch --num_processes N -m neurodit.cli sample ...`` or
``torchrun``: ``WORLD_SIZE`` > 1): the fixed batches of ``batch_size`` volumes are dealt round-robin
(batch j to rank ``j % N``); every rank writes its volumes into one shard folder beside ``out``, and
after a barrier the main process checks that every requested index is there exactly once and writes
the cohort (NIfTI, ``participants.tsv``, ``run.json``) through ``write_synthetic_cohort``, renamed into
place atomically. A volume's noise does not depend on the sharding: the initial noise of sample i is
the i-th draw of one seeded generator (every rank draws the whole sequence and keeps its own), the
step noise of batch j (ddpm sampler) comes from a generator seeded by (seed, j). So N processes write
the same volumes as one.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from neurodit.data.synthetic import SYN_PREFIX, parse_label, write_synthetic_cohort, write_synthetic_maps
from neurodit.defaults import SAMPLING
from neurodit.diffusion import SAMPLERS, create_diffusion
from neurodit.errors import NeuroditError
from neurodit.io import read_json
from neurodit.runs import TrainedRun, plan_classes


def sample_diffusion(run_dir: str | Path, n: int | None, out: str | Path, *,
                     label: dict[str, str] | list[str] | None = None, match: str | Path | None = None,
                     steps: int = SAMPLING.steps,
                     guidance: float = SAMPLING.guidance, scheduler: str | None = None, seed: int = 0,
                     batch_size: int = SAMPLING.batch_size, overwrite: bool = False, device: str | None = None, vae=None,
                     progress: bool = True) -> Path:
    """Write ``n`` synthetic volumes of the diffusion run RUN_DIR's model to the cohort folder ``out``;
    returns ``out``. (Any generator's run: ``neurodit.generators.base.sample``.)

    Classes: ``label`` (e.g. ``{"sex": "F"}``) keeps the matching classes; without it, samples cycle
    through all classes (balanced). ``match`` (a participants.tsv or cohort folder) instead: one volume per
    table row with that row's class under the run's labels (``neurodit.runs.plan_classes``; ``n`` None or
    the row count), synthetic ids distinct from the table's.
    Same ``seed`` -> same volumes, whatever ``batch_size``: the initial
    noise of sample i is the i-th draw of one seeded generator, and DDIM/DPM-Solver++ are deterministic
    (DDPM draws its step noise from one generator per batch, so it is reproducible for a fixed batch
    size). Launched over several processes, the batches are sharded (module docstring); the volumes
    are the same as with one process.
    ``scheduler``: ddim / dpm / ddpm for ddpm runs, euler / heun / ab2 / dpm for flow runs; None = the
    run's own sampler (its training config's ``sampler``).
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch_size < 1:
        raise NeuroditError(f"--steps and --batch-size must be >= 1, got {steps} and {batch_size}")
    if not math.isfinite(guidance) or guidance < 0:
        raise NeuroditError(f"--guidance must be a finite number >= 0 (1 = no guidance), got {guidance}")
    if scheduler is not None and scheduler not in SAMPLERS:
        raise NeuroditError(f"--scheduler must be one of {', '.join(SAMPLERS)}, got {scheduler!r}")
    run = TrainedRun(run_dir, torch.device(device) if device else None)
    run.attach_vae(vae)
    plan = plan_classes(run.labels, n, label=label, match=match)  # bad --n / --label / --match: nothing written
    class_of, n = list(plan.class_of), plan.n
    process = create_diffusion(run.diffusion)
    scheduler = scheduler or run.sampler  # the run's own (its training config), not the objective's default
    autocast = torch.bfloat16 if run.device.type == "cuda" and torch.cuda.is_bf16_supported() else None

    state = shard_state()
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)

    def batches(mine_only: bool):  # -> (first index, (B, D, H, W) mm2/s) of this rank's batches
        noise_gen = torch.Generator().manual_seed(int(seed))  # CPU: same numbers on every device
        starts = list(range(0, n, batch_size))
        bar = tqdm(total=-(-len(starts) // world) if mine_only else len(starts), desc="sample",
                   disable=not progress or rank != 0)
        for j, start in enumerate(starts):
            ids = class_of[start:start + batch_size]
            # every rank draws every batch's noise, in order: sample i gets the i-th draw whatever the shard
            x_init = torch.randn((len(ids), *run.input_shape), generator=noise_gen).to(run.device)
            if mine_only and j % world != rank:
                continue
            step_gen = torch.Generator(device=run.device).manual_seed(batch_seed(seed, j))
            y = torch.tensor(ids, dtype=torch.long, device=run.device)
            x = process.sample(run.model, y, run.labels.null_class, run.input_shape, kind=scheduler,
                               steps=steps, guidance=guidance, generator=step_gen, autocast_dtype=autocast,
                               init=x_init)
            bar.update(1)
            yield start, run.to_volumes(x)
        bar.close()

    def write(volumes) -> Path:
        if run.maps:  # several maps: one cohort folder per map, out/<map>/, the same subjects in each
            return write_synthetic_maps(volumes, run.maps, plan.columns(run.labels), run.grid.affine, out,
                                        overwrite=overwrite, seed=seed, avoid_ids=plan.avoid_ids, meta=meta,
                                        classes=list(plan.counts(run.labels)),
                                        class_counts=plan.counts(run.labels), processes=world)
        return write_synthetic_cohort(volumes, plan.columns(run.labels), run.grid.affine, out,
                                      overwrite=overwrite, seed=seed, avoid_ids=plan.avoid_ids,
                                      map_name=read_json(Path(run_dir) / "prepare.json").get("map", "md"),
                                      meta=meta, classes=list(plan.counts(run.labels)),
                                      class_counts=plan.counts(run.labels), processes=world)

    meta = {"run_dir": str(Path(run_dir).resolve()), "generator": run.generator, "n": n, "label": plan.wanted,
            "match": None if plan.match is None else str(plan.match.resolve()), "steps": steps,
            "guidance": guidance, "scheduler": scheduler, "batch_size": batch_size}

    if state is None:  # one batch at a time: memory stays flat in n
        return write(v for _, vols in batches(mine_only=False) for v in vols)
    return _write_sharded(state, Path(out), n, overwrite, (
        (start + k, v) for start, vols in batches(mine_only=True) for k, v in enumerate(vols)), write)


def shard_state():
    """accelerate's ``PartialState`` when launched over several processes (``accelerate launch`` or
    ``torchrun`` set ``WORLD_SIZE``), else None (one process: nothing to coordinate)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state if state.num_processes > 1 else None


def batch_seed(seed: int, j: int) -> int:
    """Seed of batch j's step-noise generator (ddpm sampler): a function of (seed, j), not of the rank."""
    return (int(seed) * 1_000_003 + 1 + j * 7_919) % (2**63 - 1)


def _write_sharded(state, out: Path, n: int, overwrite: bool, mine, write) -> Path:
    """Ranks write their (index, volume) pairs as ``.npy`` into ``.<out>.shards/``; after a barrier the
    main process checks indices 0..n-1 are each there once and writes the cohort with ``write``."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        # every rank sees the same folder: all refuse before any work, none waits at a barrier
        raise NeuroditError("output folder exists and is not empty (pass --overwrite to replace it)", out)
    shards = out.parent / f".{out.name}.shards"
    if state.is_main_process:
        shutil.rmtree(shards, ignore_errors=True)  # left by a killed earlier run
        shards.mkdir(parents=True)
    state.wait_for_everyone()
    for i, vol in mine:
        tmp = shards / f".{i:07d}.{state.process_index}.npy"
        np.save(tmp, np.asarray(vol, dtype=np.float32))
        os.replace(tmp, shards / f"{i:07d}.npy")  # atomic: the main process never reads a half file
    state.wait_for_everyone()
    try:
        if state.is_main_process:
            have = sorted(p.name for p in shards.glob("[0-9]*.npy"))
            want = [f"{i:07d}.npy" for i in range(n)]
            if have != want:
                raise NeuroditError(f"sharded sample: {len(have)} volume files for {n} requested "
                                    f"(missing {sorted(set(want) - set(have))[:5]})", shards)
            write(np.load(shards / f, allow_pickle=False) for f in want)
    finally:
        if state.is_main_process:
            shutil.rmtree(shards, ignore_errors=True)
        state.wait_for_everyone()
    return out


__all__ = ["SYN_PREFIX", "TrainedRun", "batch_seed", "parse_label", "sample_diffusion", "shard_state"]
