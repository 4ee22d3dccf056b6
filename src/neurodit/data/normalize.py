"""Invertible intensity map between physical MD (mm²/s) and the model range [-1, 1].

A fixed affine map (not per-volume min-max or z-scoring) so that every volume, real or synthetic,
shares one physical scale and synthetic mosaics convert back to mm²/s exactly. The default range
[0, 4e-3] mm²/s covers brain MD: white matter ~0.7e-3, grey matter ~0.85e-3, CSF/free water at body
temperature ~3.0e-3 (values above vmax, e.g. noise spikes, are clipped).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neurodit.errors import NeuroditError


def _clip(x: Any, lo: float, hi: float) -> Any:
    # Works on numpy arrays, numpy scalars and torch tensors (which have .clamp) without importing torch.
    return x.clamp(lo, hi) if hasattr(x, "clamp") else np.clip(x, lo, hi)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """``to_model(x) = 2*clip((x - vmin)/(vmax - vmin), 0, 1) - 1``; ``to_physical`` is its inverse.

    ``vmin``/``vmax`` in ``unit`` (mm²/s). Exact inverse (up to float rounding) on [vmin, vmax].
    Outside the brain mask the model value is -1 (i.e. vmin = 0 mm²/s).
    """

    vmin: float = 0.0
    vmax: float = 4.0e-3
    unit: str = "mm2/s"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.vmin) and np.isfinite(self.vmax) and self.vmax > self.vmin):
            raise NeuroditError(f"normalization needs finite vmin < vmax, got {self.vmin}, {self.vmax}")

    @property
    def scale(self) -> float:
        return float(self.vmax - self.vmin)

    def to_model(self, x_phys: Any) -> Any:
        """Physical values (``unit``) -> model range [-1, 1]; same array type and shape."""
        return 2.0 * _clip((x_phys - self.vmin) / self.scale, 0.0, 1.0) - 1.0

    def to_physical(self, y_model: Any) -> Any:
        """Model range [-1, 1] -> physical values in ``unit`` (no clipping: clip before if needed)."""
        return (y_model + 1.0) / 2.0 * self.scale + self.vmin

    def to_dict(self) -> dict[str, Any]:
        return {"vmin": float(self.vmin), "vmax": float(self.vmax), "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        from neurodit.config import from_dict

        return from_dict(cls, dict(data), "normalization")
