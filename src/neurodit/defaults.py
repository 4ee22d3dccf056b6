"""Defaults shared across layers that must be readable without torch: the CLI shows them in
``--help`` at import time (its stage modules load lazily, so ``neurodit --help`` stays fast), and the
diffusion layer, ``neurodit.sample``, the training previews, ``bench``, ``compare`` and the demo read
the same numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingDefaults:
    """Sampler settings used when nobody names them.

    ``steps``: reverse steps of the sampler (DDIM / DPM-Solver++ / DDPM, or Euler / Heun for flow runs);
    ``guidance``: the classifier-free-guidance scale (Ho & Salimans 2022; 1 = conditional only, 0 =
    unconditional).
    """

    steps: int = 25
    guidance: float = 2.0


SAMPLING = SamplingDefaults()

__all__ = ["SAMPLING", "SamplingDefaults"]
