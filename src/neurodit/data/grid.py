"""The target voxel grid every prepared volume is resampled onto.

A :class:`Grid` is a shape ``(D, H, W)`` plus a 4x4 voxel-to-world affine (mm, RAS+ orientation,
i.e. axis 0 runs left->right, 1 posterior->anterior, 2 inferior->superior). :func:`make_grid`
builds an axis-aligned RAS grid whose centre is the centre of the MNI152 (2009c) brain mask, so
volumes in MNI space (as the maps of Chattopadhyay et al. 2025 were) land centred without
registration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from neurodit.errors import NeuroditError

# Default field of view in mm (x, y, z): the 192x224x192 mm box that holds the MNI152 brain
# (bounding box 144x178x154 mm) with margin; at 2 mm it gives the (96, 112, 96) grid.
DEFAULT_FOV_MM: tuple[float, float, float] = (192.0, 224.0, 192.0)
DEFAULT_VOXEL_MM = 2.0

# Centre (mm, MNI world coordinates) of the bounding box of nilearn's
# ``load_mni152_brain_mask(resolution=2)`` (> 0.5): x -72..72, y -106..72, z -72..82.
# Hard-coded so make_grid needs no nilearn import; tests/data/test_cohort.py checks it against nilearn.
MNI152_BRAIN_CENTRE_MM: tuple[float, float, float] = (0.0, -17.0, 5.0)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` (D, H, W) and ``affine`` (4x4, voxel index -> world mm, RAS)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise NeuroditError(f"grid shape must be 3 positive integers, got {self.shape}")
        affine = np.array(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise NeuroditError(f"grid affine must be a finite 4x4 matrix, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise NeuroditError("grid affine is singular")
        affine.setflags(write=False)  # frozen dataclass: keep the array immutable too
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm along the three array axes (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def centre(self) -> tuple[float, float, float]:
        """World coordinate (mm) of the centre of the grid box."""
        mid = (np.asarray(self.shape, dtype=np.float64) - 1.0) / 2.0
        return tuple(float(v) for v in self.affine[:3, :3] @ mid + self.affine[:3, 3])

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "affine": self.affine.tolist(),
                "voxel_size": list(self.voxel_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        try:
            return cls(tuple(data["shape"]), np.asarray(data["affine"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise NeuroditError(f"not a valid grid description ({exc})") from exc

    def same_as(self, other: Grid, atol: float = 1e-4) -> bool:
        """Same shape and (to ``atol`` mm) the same affine."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def __eq__(self, other: object) -> bool:  # ndarray field: dataclass __eq__ would be ambiguous
        return isinstance(other, Grid) and self.same_as(other, atol=0.0)

    def __hash__(self) -> int:
        return hash((self.shape, self.affine.tobytes()))


def _triple(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    vals = [float(value)] * 3 if np.isscalar(value) else [float(v) for v in value]  # type: ignore[union-attr]
    if len(vals) != 3 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise NeuroditError(f"{name} must be one or three positive numbers, got {value!r}")
    return vals[0], vals[1], vals[2]


def make_grid(shape: Sequence[int] | None = None, voxel_size: float | Sequence[float] | None = None,
              fov_mm: Sequence[float] = DEFAULT_FOV_MM) -> Grid:
    """An axis-aligned RAS grid centred on the MNI152 brain.

    - shape only: voxel size = FOV / shape per axis (may be anisotropic, e.g. 32^3 -> 6x7x6 mm);
    - voxel size only (mm, one or three numbers): shape = round(FOV / voxel size);
    - both: exactly that shape and voxel size (the FOV follows);
    - neither: 2 mm voxels, shape (96, 112, 96).
    """
    fov = np.asarray(_triple(fov_mm, "fov_mm"))
    if shape is not None:
        shp = tuple(int(s) for s in shape)
        if len(shp) != 3 or min(shp) < 1:
            raise NeuroditError(f"--shape must be three positive integers D H W, got {tuple(shape)}")
    if shape is None and voxel_size is None:
        voxel_size = DEFAULT_VOXEL_MM
    if shape is None:
        vox = np.asarray(_triple(voxel_size, "--voxel-size"))  # type: ignore[arg-type]
        shp = tuple(max(1, int(round(f / v))) for f, v in zip(fov, vox, strict=True))
    elif voxel_size is None:
        vox = fov / np.asarray(shp, dtype=np.float64)
    else:
        vox = np.asarray(_triple(voxel_size, "--voxel-size"))
    # Voxel centres i*vox + origin; the box centre (shape-1)/2 sits on the MNI152 brain centre.
    origin = np.asarray(MNI152_BRAIN_CENTRE_MM) - (np.asarray(shp) - 1.0) / 2.0 * vox
    affine = np.eye(4)
    affine[:3, :3] = np.diag(vox)
    affine[:3, 3] = origin
    return Grid(shp, affine)
