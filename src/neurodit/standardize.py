"""Per-pixel standardization of a diffusion generator's inputs: z = (x - mean) / scale.

Why (docs/RECIPES.md, "standardized inputs"): a diffusion model's sampler treats every direction its
network cannot output as a Gaussian of the *data's* assumed variance, which is 1 for epsilon-, v- and
flow-targets. The tiny DiT at patch 32 outputs 256 numbers per 1,024-pixel token, so most directions
of every token are such directions. In the raw model range (background -1, brain around 0, the
subject-to-subject spread ~0.09) a unit Gaussian there is pure noise; after subtracting the training
mean image and dividing by the training per-pixel sd, a unit Gaussian in those directions is the
right amount of subject-to-subject texture inside the brain and (with ``scale`` floored at a small
``floor``) almost nothing outside it. The same transform is the usual latent-scaling of latent
diffusion (Rombach et al. 2022 scale SD-VAE latents to unit variance), done per pixel.

Pure functions on tensors plus the run-folder file this module owns, ``standardize.safetensors``
(``mean`` and ``scale``, each one model input's shape: (C, S, S) mosaics or (1, D, H, W) volumes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_bytes
from neurodit.weights import load_safetensors_bytes

STANDARDIZE = ("none", "pixel", "highpass")
FILE = "standardize.safetensors"


@dataclass(frozen=True)
class Standardizer:
    """``mean`` and ``scale``, each (C, *spatial) float32: one model input's shape."""

    mean: torch.Tensor
    scale: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) model range -> standardized."""
        return (x - self.mean.to(x.device, x.dtype)) / self.scale.to(x.device, x.dtype)

    def invert(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) standardized -> model range."""
        return z * self.scale.to(z.device, z.dtype) + self.mean.to(z.device, z.dtype)


def highpass(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """``x`` (N, C, *spatial) minus its Gaussian-smoothed (``sigma`` pixels, over the spatial axes)
    copy: the fine texture, as a numpy-backed float64 tensor of the same shape."""
    from scipy.ndimage import gaussian_filter

    a = x.double().cpu().numpy()
    smooth = gaussian_filter(a, sigma=(0.0, 0.0) + (float(sigma),) * (a.ndim - 2), mode="nearest")
    return torch.from_numpy(a - smooth)


def fit_standardizer(x: torch.Tensor, floor: float, kind: str = "pixel") -> Standardizer:
    """Per-pixel mean over the N training inputs ``x`` (N, C, *spatial) and a per-pixel scale, floored
    at ``floor`` (model units) so constant background pixels (sd 0) stay finite and near-silent.

    ``kind`` ``pixel``: the scale is the per-pixel sd. ``highpass``: the per-pixel sd of the fine
    texture (:func:`highpass`, sigma 1 pixel). The directions the network cannot output are the
    fine in-token detail (module docstring), so with ``highpass`` a unit Gaussian there has the
    data's texture amplitude rather than its whole subject-to-subject spread (which also holds the
    smooth anatomy, ~1.75x larger on the demo cohort: docs/RECIPES.md).
    """
    if x.shape[0] < 2:
        raise NeuroditError(f"standardize: need at least 2 training inputs, got {x.shape[0]}")
    if not floor > 0:
        raise NeuroditError(f"standardize: floor must be > 0, got {floor}")
    if kind not in STANDARDIZE[1:]:
        raise NeuroditError(f"standardize: kind must be one of {STANDARDIZE[1:]}, got {kind!r}")
    xd = x.double()
    mean = xd.mean(dim=0)
    spread = highpass(xd) if kind == "highpass" else xd
    scale = spread.std(dim=0, unbiased=False).clamp_min(floor)
    return Standardizer(mean.float().contiguous(), scale.float().contiguous())


def save_standardizer(run_dir: str | Path, st: Standardizer) -> Path:
    """Write ``RUN_DIR/standardize.safetensors`` atomically (temp file, then rename)."""
    blob = st_save({"mean": st.mean.cpu().contiguous(), "scale": st.scale.cpu().contiguous()})
    return atomic_write_bytes(Path(run_dir) / FILE, blob)


def load_standardizer(run_dir: str | Path) -> Standardizer | None:
    """The run's standardizer, or None for a run trained on raw inputs (no file)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        t = load_safetensors_bytes(path.read_bytes(), path)
        st = Standardizer(t["mean"].float(), t["scale"].float())
    except (NeuroditError, OSError, KeyError) as exc:
        raise NeuroditError(f"unreadable standardizer ({exc})", path) from None
    if st.mean.shape != st.scale.shape or not bool((st.scale > 0).all()):
        raise NeuroditError("standardizer: mean and scale differ in shape or scale is not > 0", path)
    return st
