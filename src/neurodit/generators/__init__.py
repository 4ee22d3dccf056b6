"""Generators behind one interface (:mod:`neurodit.generators.base`): ``fit(prep_dir, cfg) -> run_dir`` and
``sample(run_dir, n, out, label=...) -> cohort folder`` for the mosaic DiT (``dit``), the 3D diffusion UNet
(``ddpm3d``) and the fitted PCA-Gaussian (``pca``), loaded lazily from the registry (the one list of
generator names: ``names()``, ``is_diffusion(name)``); the diffusion ones' input adapters
(:mod:`neurodit.generators.inputs`); and the reference generators of the judge (``neurodit baseline``:
pca, noise, copy, mean; :mod:`neurodit.generators.reference`)."""

import importlib

# name -> submodule (relative), loaded on first use (PEP 562): runs, train and sample import
# neurodit.generators.registry, which must not run base (it imports runs and sample back) or reference.
_HOMES = {"fit": ".base", "sample": ".base", "KINDS": ".reference", "ReferenceModel": ".reference",
          "fit_reference": ".reference", "write_baseline": ".reference", "REGISTRY": ".registry",
          "Generator": ".registry", "get_generator": ".registry", "is_diffusion": ".registry", "names": ".registry"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module 'neurodit.generators' has no attribute {name!r}")


__all__ = sorted(_HOMES)
