"""Generators behind one interface (:mod:`neurodit.generators.base`): ``fit(prep_dir, cfg) -> run_dir`` and
``sample(run_dir, n, out, label=...) -> cohort folder`` for the mosaic DiT (``dit``), the 3D diffusion UNet
(``ddpm3d``) and the fitted PCA-Gaussian (``pca``), loaded lazily from the registry (the one list of
generator names: ``names()``, ``is_diffusion(name)``); the diffusion ones' input adapters
(:mod:`neurodit.generators.inputs`); and the reference generators of the judge (``neurodit baseline``:
pca, noise, copy, mean; :mod:`neurodit.generators.reference`)."""

from neurodit.generators.base import fit, sample
from neurodit.generators.reference import KINDS, ReferenceModel, fit_reference, write_baseline
from neurodit.generators.registry import REGISTRY, Generator, get_generator, is_diffusion, names

__all__ = ["KINDS", "REGISTRY", "Generator", "ReferenceModel", "fit", "fit_reference", "get_generator",
           "is_diffusion", "names", "sample", "write_baseline"]
