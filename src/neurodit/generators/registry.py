"""The registry of generators: the one list of generator names (:data:`REGISTRY`, :func:`names`), the
default one, and what a registered generator provides (:class:`Generator`). Every other module asks
here (``get_generator(name)``, ``is_diffusion(name)``) instead of spelling a name.

A registered generator is an object ``GENERATOR`` in its module, imported on first use (torch / monai
load lazily). Diffusion generators carry their input adapter (``inputs``,
:mod:`neurodit.generators.inputs`), which the training loop, the run folder and ``neurodit.sample`` ask.
This module imports nothing of the project but ``neurodit.errors``, so the run folder (``neurodit.runs``)
and the training config can ask it without an import circle; fitting and sampling any run through the
registry is :mod:`neurodit.generators.base`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from neurodit.errors import NeuroditError

# name -> module holding a GENERATOR object (imported on first use: torch / monai load lazily)
REGISTRY = {"dit": "neurodit.generators.dit", "ddpm3d": "neurodit.generators.ddpm3d",
            "pca": "neurodit.generators.pca"}
DEFAULT = "dit"  # what `neurodit train` fits unless told, and what wrote a run without generator.json
REFIT = "pca"  # fitted in seconds: what `neurodit sweep` refits per (seed, fold, fraction) unless told


class Generator(Protocol):
    """What every generator provides (``cfg`` is a ``neurodit.train.TrainConfig``)."""

    name: str
    sharded: bool  # True: sample() shards its work over launched processes itself (neurodit.sample)
    inputs: Any  # diffusion generators: their InputAdapter class (neurodit.generators.inputs); else None
    recipe: str | None  # its own configs/train/<recipe>.yaml; None: the preset's recipe

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        """Fit on the prepared folder ``prep_dir``; write and return the run folder ``cfg.out``."""

    def sample(self, run_dir: str | Path, n: int | None, out: str | Path, *, label: Any = None,
               match: str | Path | None = None, seed: int = 0, overwrite: bool = False, **options: Any) -> Path:
        """Write ``n`` volumes of the run's model (or one per row of the ``match`` participants.tsv, with
        that row's class: ``neurodit.runs.plan_classes``) as a synthetic cohort folder ``out``; return ``out``."""


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


__all__ = ["DEFAULT", "REFIT", "REGISTRY", "Generator", "diffusion_names", "get_generator", "is_diffusion", "names"]
