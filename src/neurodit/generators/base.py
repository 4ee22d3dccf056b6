"""One generator interface: ``fit(prep_dir, cfg) -> run_dir`` and ``sample(run_dir, n, out, label=...)
-> cohort folder`` for every generator, and the registry: the one list of generator names, which
``neurodit train --generator``, ``neurodit sample``, the training loop and the run folder ask.

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
import importlib
from pathlib import Path
from typing import Any, Protocol

from neurodit.errors import NeuroditError

# name -> module holding a GENERATOR object (imported on first use: torch / monai load lazily)
REGISTRY = {"dit": "neurodit.generators.dit", "ddpm3d": "neurodit.generators.ddpm3d",
            "pca": "neurodit.generators.pca"}
DEFAULT = "dit"  # what `neurodit train` fits unless told, and what wrote a run without generator.json


class Generator(Protocol):
    """What every generator provides (``cfg`` is a ``neurodit.train.TrainConfig``)."""

    name: str
    sharded: bool  # True: sample() shards its work over launched processes itself (neurodit.sample)
    inputs: Any  # diffusion generators: their InputAdapter class (neurodit.generators.inputs); else None
    recipe: str | None  # its own configs/train/<recipe>.yaml; None: the preset's recipe

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        """Fit on the prepared folder ``prep_dir``; write and return the run folder ``cfg.out``."""

    def sample(self, run_dir: str | Path, n: int, out: str | Path, *, label: Any = None, seed: int = 0,
               overwrite: bool = False, **options: Any) -> Path:
        """Write ``n`` volumes of the run's model as a synthetic cohort folder ``out``; return ``out``."""


def names() -> tuple[str, ...]:
    """The registered generator names, in registry order."""
    return tuple(REGISTRY)


def get_generator(name: str) -> Generator:
    """The registered generator ``name`` (``dit``, ``ddpm3d``, ``pca``)."""
    if name not in REGISTRY:
        raise NeuroditError(f"unknown generator '{name}' (use {', '.join(REGISTRY)})")
    return importlib.import_module(REGISTRY[name]).GENERATOR


def is_diffusion(name: str) -> bool:
    """True for a generator trained by ``neurodit.train`` and sampled by ``neurodit.sample`` (it has an
    input adapter); False for the others (pca) and for names not registered."""
    return name in REGISTRY and get_generator(name).inputs is not None


def diffusion_names() -> tuple[str, ...]:
    """The registered diffusion generators (:func:`is_diffusion`), in registry order."""
    return tuple(n for n in REGISTRY if is_diffusion(n))


def fit(prep_dir: str | Path, cfg: Any) -> Path:
    """Fit ``cfg.generator`` on ``prep_dir`` into ``cfg.out``; returns the run folder."""
    return get_generator(cfg.generator).fit(prep_dir, cfg)


def sample(run_dir: str | Path, n: int, out: str | Path, *, label: Any = None, **options: Any) -> Path:
    """Sample ``n`` volumes from any generator's run folder into the cohort folder ``out``: the
    generator named in the run's ``generator.json`` does it (for diffusion runs
    ``neurodit.sample.sample_diffusion``, for pca runs ``neurodit.generators.pca``).

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
        return gen.sample(run_dir, n, out, label=label, **options)
    from neurodit.sample import shard_state

    state = shard_state()
    if state is None:
        return gen.sample(run_dir, n, out, label=label, **options)
    try:
        if state.is_main_process:
            return gen.sample(run_dir, n, out, label=label, **options)
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
