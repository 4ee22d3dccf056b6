"""Exactly invertible tiling of 3D volumes into square 2D mosaics (and back).

Chattopadhyay et al. (2025), "Using Diffusion Transformers to Generate Synthetic Diffusion Scalar
Maps for Data Augmentation", finetune a 2D DiT on mosaics: every slice of a 3D map laid out on one
2D canvas, so that one image carries the whole volume. diffusers' ``DiTTransformer2DModel`` needs a
square input, so a mosaic here is always square: ``rows == cols`` and every tile is square.

Layout, for a volume ``(D, H, W)`` sliced along ``axis``:

* the slicing axis is moved to the front, keeping the other two axes in their order:
  ``axis=2`` (axial for RAS volumes) gives tiles ``(D, H)``, ``axis=1`` gives ``(D, W)``,
  ``axis=0`` gives ``(H, W)``;
* each tile is padded in-plane (centred, ``fill`` value) to a square ``(t, t)``;
* tile ``k`` (``k``-th selected slice) goes to row ``k // cols``, column ``k % cols``; the cells
  left over after the last slice are filled with ``fill``.

Example: a 32x32x32 volume, axis 2 -> 6x6 grid of 32x32 tiles -> 192x192 mosaic (36 cells, 4 empty).

Everything in :func:`volume_to_mosaic` / :func:`mosaic_to_volume` is reshape, pad, crop and index
only: no arithmetic touches a voxel, so the round trip is bit-exact (float32 equality) on the
selected slices, for numpy arrays and torch tensors, single volumes and batches.

This module is pure array code: of the project it imports only ``neurodit.errors`` (a rule
``tests/test_architecture.py`` checks). Files (``MOSAIC.npy/png/json``) and figures live in
``neurodit.mosaic_files``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.errors import NeuroditError

try:  # torch is a hard dependency of the package, but keep tiling importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["TilingSpec", "make_spec", "mosaic_to_volume", "volume_to_mosaic"]


@dataclass(frozen=True)
class TilingSpec:
    """How one 3D volume maps onto one square 2D mosaic (frozen, JSON round-trippable).

    Attributes:
        volume_shape: ``(D, H, W)`` of the volume (voxels).
        axis: slicing axis of the ``(D, H, W)`` volume (2 = axial for RAS volumes).
        slices: indices of the slices placed in the mosaic, in mosaic order.
        rows, cols: grid of tiles (``rows == cols``).
        tile_shape: ``(t, t)`` tile size after in-plane padding.
        pad: ``((before, after), (before, after))`` padding of the two in-plane axes.
        fill: value of padding and empty cells (e.g. -1.0 in model range, 0.0 in mm²/s).
        affine: the volume's 4x4 voxel-to-mm affine (nested tuples), or None.
    """

    volume_shape: tuple[int, int, int]
    axis: int
    slices: tuple[int, ...]
    rows: int
    cols: int
    tile_shape: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]
    fill: float = -1.0
    affine: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if len(self.volume_shape) != 3 or self.axis not in (0, 1, 2):
            raise NeuroditError(f"tiling spec: need a 3D volume shape and axis 0/1/2, got "
                                f"{self.volume_shape} axis {self.axis}")
        if self.rows != self.cols or self.rows * self.cols < len(self.slices) or not self.slices:
            raise NeuroditError(f"tiling spec: {len(self.slices)} slices do not fit a square "
                                f"{self.rows}x{self.cols} grid")
        n = self.volume_shape[self.axis]
        if any(not 0 <= s < n for s in self.slices) or len(set(self.slices)) != len(self.slices):
            raise NeuroditError(f"tiling spec: slice indices must be distinct and in [0, {n})")
        for (b, a), size, t in zip(self.pad, self.in_plane_shape, self.tile_shape, strict=True):
            if b < 0 or a < 0 or b + size + a != t:
                raise NeuroditError(f"tiling spec: padding {self.pad} does not turn in-plane "
                                    f"{self.in_plane_shape} into tile {self.tile_shape}")
        if self.affine is not None and np.asarray(self.affine).shape != (4, 4):
            raise NeuroditError("tiling spec: affine must be 4x4")

    @property
    def in_plane_shape(self) -> tuple[int, int]:
        """Shape of one slice before padding: the two non-slicing axes, in order."""
        return tuple(s for i, s in enumerate(self.volume_shape) if i != self.axis)  # type: ignore[return-value]

    @property
    def mosaic_shape(self) -> tuple[int, int]:
        return (self.rows * self.tile_shape[0], self.cols * self.tile_shape[1])

    @property
    def affine_array(self) -> np.ndarray | None:
        return None if self.affine is None else np.asarray(self.affine, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mosaic_shape"] = list(self.mosaic_shape)  # informative; recomputed by from_dict
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path | None = None) -> TilingSpec:
        data = dict(data)
        data.pop("mosaic_shape", None)
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(data) - {"fill", "affine"})
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise NeuroditError(f"tiling spec: missing keys {missing}, unknown keys {unknown}", where)
        try:
            aff = data.get("affine")
            return cls(
                volume_shape=tuple(int(v) for v in data["volume_shape"]),
                axis=int(data["axis"]),
                slices=tuple(int(v) for v in data["slices"]),
                rows=int(data["rows"]),
                cols=int(data["cols"]),
                tile_shape=tuple(int(v) for v in data["tile_shape"]),
                pad=tuple(tuple(int(v) for v in p) for p in data["pad"]),
                fill=float(data.get("fill", -1.0)),
                affine=None if aff is None else tuple(tuple(float(v) for v in row) for row in aff),
            )
        except NeuroditError as exc:
            raise NeuroditError(str(exc), where) from exc
        except (TypeError, ValueError) as exc:
            raise NeuroditError(f"tiling spec: malformed value ({exc})", where) from exc


def make_spec(volume_shape: Sequence[int], axis: int = 2, slices: Sequence[int] | None = None,
              fill: float = -1.0, affine: np.ndarray | None = None, *, tile_size: int | None = None,
              grid: int | None = None) -> TilingSpec:
    """Smallest square grid (``rows = cols = ceil(sqrt(n_slices))``) of square tiles.

    Args:
        volume_shape: ``(D, H, W)``.
        axis: slicing axis (0, 1 or 2).
        slices: slice indices to keep (default: all, in order).
        fill: value for padding and empty cells.
        affine: optional 4x4 voxel-to-mm affine, carried along for writing NIfTI back.
        tile_size: pad tiles further to this side (e.g. to make the mosaic divisible by a patch size).
        grid: use a larger ``grid x grid`` layout than the smallest one.
    """
    shape = tuple(int(s) for s in volume_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise NeuroditError(f"tiling: expected a 3D volume shape, got {shape}")
    if axis not in (0, 1, 2):
        raise NeuroditError(f"tiling: axis must be 0, 1 or 2, got {axis}")
    sel = tuple(range(shape[axis])) if slices is None else tuple(int(s) for s in slices)
    in_plane = [s for i, s in enumerate(shape) if i != axis]
    t = max(in_plane)
    if tile_size is not None:
        if tile_size < t:
            raise NeuroditError(f"tiling: tile_size {tile_size} is smaller than the slice {in_plane}")
        t = int(tile_size)
    n = max(1, math.ceil(math.sqrt(len(sel))))
    if grid is not None:
        if grid < n:
            raise NeuroditError(f"tiling: {len(sel)} slices do not fit a {grid}x{grid} grid")
        n = int(grid)
    # centred padding: the extra voxel (odd difference) goes after
    pad = tuple(((t - s) // 2, t - s - (t - s) // 2) for s in in_plane)
    aff = None
    if affine is not None:
        aff_arr = np.asarray(affine, dtype=np.float64)
        if aff_arr.shape != (4, 4):
            raise NeuroditError(f"tiling: affine must be 4x4, got {aff_arr.shape}")
        aff = tuple(tuple(float(v) for v in row) for row in aff_arr)
    return TilingSpec(volume_shape=shape, axis=axis, slices=sel, rows=n, cols=n, tile_shape=(t, t),
                      pad=pad, fill=float(fill), affine=aff)  # type: ignore[arg-type]


def _is_torch(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def volume_to_mosaic(volume, spec: TilingSpec):
    """Tile ``(D, H, W)`` or a batch ``(B, D, H, W)`` into ``(R*t, C*t)`` or ``(B, R*t, C*t)``.

    Accepts numpy arrays or torch tensors (same type, dtype and device out). Pure: no voxel value
    is changed, so :func:`mosaic_to_volume` inverts it exactly on ``spec.slices``.
    """
    single = volume.ndim == 3
    if volume.ndim not in (3, 4) or tuple(volume.shape[-3:]) != spec.volume_shape:
        raise NeuroditError(f"tiling: volume shape {tuple(volume.shape)} does not match the spec "
                            f"{spec.volume_shape} (expected (D,H,W) or (B,D,H,W))")
    x = volume[None] if single else volume  # (B, D, H, W)
    b = x.shape[0]
    (pb0, pa0), (pb1, pa1) = spec.pad
    t = spec.tile_shape[0]
    n_cells = spec.rows * spec.cols
    n_sel = len(spec.slices)
    if _is_torch(x):
        idx = torch.as_tensor(spec.slices, dtype=torch.long, device=x.device)
        s = torch.movedim(x, spec.axis + 1, 1).index_select(1, idx)  # (B, S, h, w)
        canvas = torch.full((b, n_cells, t, t), spec.fill, dtype=x.dtype, device=x.device)
        canvas[:, :n_sel, pb0:t - pa0, pb1:t - pa1] = s
        # (B, R*C, t, t) -> (B, R, C, t, t) -> (B, R, t, C, t) -> (B, R*t, C*t)
        m = canvas.reshape(b, spec.rows, spec.cols, t, t).permute(0, 1, 3, 2, 4)
        m = m.reshape(b, spec.rows * t, spec.cols * t)
    else:
        x = np.asarray(x)
        s = np.moveaxis(x, spec.axis + 1, 1)[:, list(spec.slices)]  # (B, S, h, w)
        canvas = np.full((b, n_cells, t, t), spec.fill, dtype=x.dtype)
        canvas[:, :n_sel, pb0:t - pa0, pb1:t - pa1] = s
        m = canvas.reshape(b, spec.rows, spec.cols, t, t).transpose(0, 1, 3, 2, 4)
        m = np.ascontiguousarray(m.reshape(b, spec.rows * t, spec.cols * t))
    return m[0] if single else m


def mosaic_to_volume(mosaic, spec: TilingSpec):
    """Invert :func:`volume_to_mosaic`: ``(R*t, C*t)`` -> ``(D, H, W)``, ``(B, R*t, C*t)`` -> ``(B, D, H, W)``.

    Slices not in ``spec.slices`` get ``spec.fill``; padding and empty cells are dropped.
    """
    single = mosaic.ndim == 2
    if mosaic.ndim not in (2, 3) or tuple(mosaic.shape[-2:]) != spec.mosaic_shape:
        raise NeuroditError(f"tiling: mosaic shape {tuple(mosaic.shape)} does not match the spec "
                            f"{spec.mosaic_shape} (expected (R*t, C*t) or (B, R*t, C*t))")
    m = mosaic[None] if single else mosaic  # (B, R*t, C*t)
    b = m.shape[0]
    (pb0, pa0), (pb1, pa1) = spec.pad
    t = spec.tile_shape[0]
    n_sel = len(spec.slices)
    d_axis = spec.volume_shape[spec.axis]
    h, w = spec.in_plane_shape
    if _is_torch(m):
        # (B, R*t, C*t) -> (B, R, t, C, t) -> (B, R, C, t, t) -> (B, R*C, t, t)
        cells = m.reshape(b, spec.rows, t, spec.cols, t).permute(0, 1, 3, 2, 4)
        cells = cells.reshape(b, spec.rows * spec.cols, t, t)
        tiles = cells[:, :n_sel, pb0:t - pa0, pb1:t - pa1]  # (B, S, h, w)
        out = torch.full((b, d_axis, h, w), spec.fill, dtype=m.dtype, device=m.device)
        out[:, torch.as_tensor(spec.slices, dtype=torch.long, device=m.device)] = tiles
        vol = torch.movedim(out, 1, spec.axis + 1).contiguous()
    else:
        m = np.asarray(m)
        cells = m.reshape(b, spec.rows, t, spec.cols, t).transpose(0, 1, 3, 2, 4)
        cells = cells.reshape(b, spec.rows * spec.cols, t, t)
        tiles = cells[:, :n_sel, pb0:t - pa0, pb1:t - pa1]
        out = np.full((b, d_axis, h, w), spec.fill, dtype=m.dtype)
        out[:, list(spec.slices)] = tiles
        vol = np.ascontiguousarray(np.moveaxis(out, 1, spec.axis + 1))
    return vol[0] if single else vol
