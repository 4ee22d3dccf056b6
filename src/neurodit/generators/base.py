"""One generator interface: ``fit(prep_dir, cfg) -> run_dir`` and ``sample(run_dir, n, out, label=...)
-> cohort folder`` for every generator, through the registry (:mod:`neurodit.generators.registry`, the
one list of generator names); ``neurodit train --generator`` and ``neurodit sample`` use them.

Generators (docs/ARCHITECTURE.md, "Generators"):

- ``dit`` (:mod:`neurodit.generators.dit`): the mosaic Diffusion Transformer (Peebles & Xie 2023;
  Chattopadhyay et al. 2025), every preset and ``--init`` path.
- ``ddpm3d`` (:mod:`neurodit.generators.ddpm3d`): a class-conditional 3D diffusion UNet on whole
  volumes (MONAI ``DiffusionModelUNet``), same objectives, guidance loop and training loop.
- ``pca`` (:mod:`neurodit.generators.pca`): the class-conditional PCA-Gaussian reference
  (:mod:`neurodit.generators.reference`) fitted once and saved as a run folder.

A diffusion generator carries its input adapter (``inputs``, :mod:`neurodit.generators.inputs`): what
its network sees and how that maps back to volumes. The training loop (``neurodit.train``), the run
folder (``neurodit.runs.TrainedRun``) and ``neurodit.sample`` ask the adapter, never the name.

A run folder names its generator in ``generator.json`` (``neurodit.runs.read_generator``), so
``sample(run_dir, ...)`` needs no flag.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from neurodit.errors import NeuroditError

# the registry, re-exported as part of this interface (its owner is neurodit.generators.registry, which
# the run folder and the training loop import directly: no import circle through fit / sample below)
from neurodit.generators.registry import (
    DEFAULT,
    REGISTRY,
    Generator,
    diffusion_names,
    get_generator,
    is_diffusion,
    names,
)


def fit(prep_dir: str | Path, cfg: Any) -> Path:
    """Fit ``cfg.generator`` on ``prep_dir`` into ``cfg.out``; returns the run folder."""
    return get_generator(cfg.generator).fit(prep_dir, cfg)


def sample(run_dir: str | Path, n: int | None, out: str | Path, *, label: Any = None,
           match: str | Path | None = None, **options: Any) -> Path:
    """Sample ``n`` volumes from any generator's run folder into the cohort folder ``out``: the
    generator named in the run's ``generator.json`` does it (for diffusion runs
    ``neurodit.sample.sample_diffusion``, for pca runs ``neurodit.generators.pca``).

    ``match``: a participants.tsv (or a cohort folder): one volume per row with the row's class under the
    run's labels (e.g. its sex x age bin), instead of ``n`` (``neurodit.runs.plan_classes``; every
    generator, as every run has ``labels.json``).

    ``options`` go to the generator: ``steps``, ``guidance`` (defaults ``neurodit.defaults.SAMPLING``),
    ``scheduler``, ``batch_size``, ``device`` for the diffusion generators (the pca one ignores them);
    ``seed`` and ``overwrite`` for all.

    Launched over several processes (``accelerate launch`` / ``torchrun``), generators whose
    ``sharded`` attribute is true (dit, ddpm3d: ``neurodit.sample``) split the work across the ranks;
    the others (pca: seconds on one CPU) sample on the main process while the rest wait.
    """
    from neurodit.runs import read_generator

    gen = get_generator(read_generator(Path(run_dir)))
    if getattr(gen, "sharded", False):
        return gen.sample(run_dir, n, out, label=label, match=match, **options)
    from neurodit.sample import shard_state

    state = shard_state()
    if state is None:
        return gen.sample(run_dir, n, out, label=label, match=match, **options)
    try:
        if state.is_main_process:
            return gen.sample(run_dir, n, out, label=label, match=match, **options)
    finally:
        state.wait_for_everyone()
    return Path(out)


def with_inputs(cfg: Any, prep_dir: str | Path, generator: str) -> Any:
    """``cfg`` with ``prep_dir`` and ``generator`` set (a copy; the caller's config is not changed)."""
    if cfg.generator != generator:
        raise NeuroditError(f"config names generator '{cfg.generator}', not '{generator}'")
    return dataclasses.replace(cfg, prep_dir=str(prep_dir))


__all__ = ["DEFAULT", "REGISTRY", "Generator", "diffusion_names", "fit", "get_generator", "is_diffusion",
           "names", "sample", "with_inputs"]
