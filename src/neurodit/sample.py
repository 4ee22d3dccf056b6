"""``neurodit sample``: draw synthetic 3D MD volumes from a trained diffusion run (``dit`` or
``ddpm3d``; ``neurodit.generators`` dispatches every generator) and write them as a cohort.

Classifier-free guidance (Ho & Salimans 2022) with our own loop over a diffusers scheduler
(``neurodit.diffusion``); the run folder is opened by ``neurodit.runs.TrainedRun``; each mosaic is
decoded (latent presets), untiled (``neurodit.tiling.mosaic_to_volume``; ddpm3d outputs are volumes
already), mapped back to mm²/s and set
to 0 outside the training brain mask (``neurodit.data.prepare.model_to_mm2s``) and written as NIfTI on
the prepare grid's affine. The output folder is a cohort folder (docs/ARCHITECTURE.md, "Input
format") that ``neurodit prepare`` accepts.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from neurodit.data.synthetic import SYN_PREFIX, label_columns, parse_label, write_synthetic_cohort
from neurodit.diffusion import SAMPLERS, create_diffusion, default_sampler
from neurodit.errors import NeuroditError
from neurodit.runs import TrainedRun


def sample(run_dir: str | Path, n: int, out: str | Path, *, label: dict[str, str] | list[str] | None = None,
           steps: int = 25, guidance: float = 2.0, scheduler: str | None = None, seed: int = 0,
           batch_size: int = 16, overwrite: bool = False, device: str | None = None, vae=None,
           progress: bool = True) -> Path:
    """Write ``n`` synthetic volumes of RUN_DIR's model to the cohort folder ``out``; returns ``out``.

    Classes: ``label`` (e.g. ``{"sex": "F"}``) keeps the matching classes; without it, samples cycle
    through all classes (balanced). Same ``seed`` -> same volumes, whatever ``batch_size``: the initial
    noise of sample i is the i-th draw of one seeded generator, and DDIM/DPM-Solver++ are deterministic
    (DDPM draws its step noise from the same generator, so it is reproducible for a fixed batch size).
    ``scheduler``: ddim / dpm / ddpm for ddpm runs, euler / heun for flow runs; None = the run's
    default (ddim, euler).
    """
    from tqdm.auto import tqdm

    if n < 1:
        raise NeuroditError(f"--n must be >= 1, got {n}")
    if steps < 1 or batch_size < 1:
        raise NeuroditError(f"--steps and --batch-size must be >= 1, got {steps} and {batch_size}")
    if not math.isfinite(guidance) or guidance < 0:
        raise NeuroditError(f"--guidance must be a finite number >= 0 (1 = no guidance), got {guidance}")
    if scheduler is not None and scheduler not in SAMPLERS:
        raise NeuroditError(f"--scheduler must be one of {', '.join(SAMPLERS)}, got {scheduler!r}")
    run = TrainedRun(run_dir, torch.device(device) if device else None)
    run.attach_vae(vae)
    wanted = parse_label(label) if not isinstance(label, dict) else label
    classes = run.labels.select(wanted) if wanted else list(range(run.labels.num_classes))
    class_of = [classes[i % len(classes)] for i in range(n)]
    process = create_diffusion(run.diffusion)
    scheduler = scheduler or default_sampler(run.diffusion)
    autocast = torch.bfloat16 if run.device.type == "cuda" and torch.cuda.is_bf16_supported() else None

    noise_gen = torch.Generator().manual_seed(int(seed))  # CPU: same numbers on every device
    step_gen = torch.Generator(device=run.device).manual_seed(int(seed) + 1)

    def volumes():  # one batch at a time: memory stays flat in n
        for start in tqdm(range(0, n, batch_size), desc="sample", disable=not progress):
            ids = class_of[start:start + batch_size]
            y = torch.tensor(ids, dtype=torch.long, device=run.device)
            x_init = torch.randn((len(ids), *run.input_shape), generator=noise_gen).to(run.device)
            x = process.sample(run.model, y, run.labels.null_class, run.input_shape, kind=scheduler,
                               steps=steps, guidance=guidance, generator=step_gen, autocast_dtype=autocast,
                               init=x_init)
            yield from run.to_volumes(x)  # (D, H, W) mm2/s each

    return write_synthetic_cohort(volumes(), label_columns([run.labels.class_values(c) for c in class_of]),
                                  run.grid.affine, out, overwrite=overwrite, seed=seed,
                                  meta={"run_dir": str(Path(run_dir).resolve()), "generator": run.generator,
                                        "n": n, "label": wanted, "steps": steps, "guidance": guidance,
                                        "scheduler": scheduler, "batch_size": batch_size},
                                  classes=[run.labels.classes[c] for c in classes])


__all__ = ["SYN_PREFIX", "TrainedRun", "parse_label", "sample"]
