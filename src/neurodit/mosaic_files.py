"""Mosaic files and pictures: ``neurodit tile`` / ``untile`` and the PNG renderers.

The pure volume <-> mosaic pair lives in :mod:`neurodit.tiling`; this module adds what touches the
disk or matplotlib: ``MOSAIC.npy`` (float32, exact) or ``MOSAIC.png`` (8-bit) with the
:class:`~neurodit.tiling.TilingSpec` beside it in ``MOSAIC.json`` (docs/ARCHITECTURE.md, "Tiling"),
a pixel-exact grayscale PNG writer and a matplotlib figure of one or more mosaics. NIfTI files are
read with the data layer's reader (:func:`neurodit.data.cohort.load_nifti_3d`) and written with
:func:`neurodit.io.write_nifti`: one reader and one writer for the package.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.data.cohort import load_nifti_3d
from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_bytes, read_json, write_json, write_nifti
from neurodit.tiling import TilingSpec, make_spec, mosaic_to_volume, volume_to_mosaic

__all__ = ["save_mosaic_png", "tile_file", "untile_file", "write_gray_png"]


def _window(x: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = float(np.min(x)) if vmin is None else float(vmin)
    hi = float(np.max(x)) if vmax is None else float(vmax)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def write_gray_png(mosaic, path: str | Path, vmin: float | None = None,
                   vmax: float | None = None) -> tuple[float, float]:
    """Write one 2D mosaic as a pixel-exact 8-bit grayscale PNG (lossy: 256 levels over [vmin, vmax]).

    Returns the intensity window ``(vmin, vmax)`` used (pixel 0 = vmin, 255 = vmax).
    """
    from PIL import Image

    m = _to_numpy(mosaic).astype(np.float64)
    if m.ndim != 2:
        raise NeuroditError(f"write_gray_png: expected a 2D mosaic, got shape {m.shape}", path)
    lo, hi = _window(m, vmin, vmax)
    u8 = np.round(np.clip((m - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8, mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return lo, hi


def save_mosaic_png(mosaic, path: str | Path, vmin: float | None = None, vmax: float | None = None,
                    cmap: str = "gray", colorbar_label: str | None = None,
                    titles: Sequence[str] | None = None, spec: TilingSpec | None = None,
                    dpi: int = 100) -> Path:
    """Render a mosaic ``(H, W)`` or a batch ``(B, H, W)`` to a PNG figure (matplotlib).

    Batches are laid out in a near-square grid of panels sharing one intensity window; with
    ``colorbar_label`` (e.g. ``"MD (mm²/s)"``) a colour bar is drawn. numpy or torch input. Without
    ``spec`` the mosaic is drawn as stored (row 0 at the top: what the DiT sees); with ``spec`` each
    tile is turned for viewing (first in-plane axis left->right, second bottom->top: RAS axial
    tiles appear anterior-up), tile order unchanged. Use :func:`write_gray_png` for a pixel-exact
    image instead of a figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = _to_numpy(mosaic).astype(np.float32)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[0] == 0:
        raise NeuroditError(f"save_mosaic_png: expected (H, W) or (B, H, W), got {m.shape}", path)
    if spec is not None:
        if tuple(m.shape[1:]) != spec.mosaic_shape:
            raise NeuroditError(f"save_mosaic_png: mosaic {m.shape[1:]} does not match spec "
                                f"{spec.mosaic_shape}", path)
        r, c, t = spec.rows, spec.cols, spec.tile_shape[0]
        # (B, R*t, C*t) -> (B, R, t, C, t): swap the two in-tile axes and flip the new row axis
        m = m.reshape(-1, r, t, c, t).transpose(0, 1, 4, 3, 2)[:, :, ::-1].reshape(-1, r * t, c * t)
    lo, hi = _window(m, vmin, vmax)
    n = m.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    panel = 3.0
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + (1.0 if colorbar_label else 0.0),
                                                  panel * rows), squeeze=False)
    im = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            im = ax.imshow(m[k], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if titles is not None and k < len(titles):
                ax.set_title(str(titles[k]), fontsize=8)
    if colorbar_label is not None and im is not None:
        cbar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
        cbar.set_label(colorbar_label)
        cbar.formatter.set_powerlimits((-2, 2))
        cbar.update_ticks()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _spec_path(mosaic_path: Path) -> Path:
    return mosaic_path.with_suffix(".json")


def tile_file(volume_path: str | Path, out: str | Path, axis: int = 2) -> Path:
    """``neurodit tile``: NIfTI -> ``MOSAIC.npy`` (float32, exact) or ``MOSAIC.png`` (8-bit, for viewing).

    Writes the :class:`TilingSpec` (with the volume affine) beside it as ``MOSAIC.json``; for PNG the
    JSON also holds the intensity window. Padding cells are 0 (mm²/s background).
    """
    volume_path, out = Path(volume_path), Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise NeuroditError("mosaic output must end in .npy or .png", out)
    # the data layer's reader, in the stored orientation (no RAS turn): untile then gives back the
    # very same voxels and affine
    loaded = load_nifti_3d(volume_path, canonical=False)
    vol, affine = loaded.data, loaded.affine  # (D, H, W) float32, (4, 4)
    spec = make_spec(vol.shape, axis=axis, fill=0.0, affine=affine)
    mosaic = volume_to_mosaic(vol, spec)  # (R*t, C*t) float32
    meta: dict[str, Any] = {"spec": spec.to_dict(), "source": str(volume_path), "format": suffix[1:]}
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, mosaic, allow_pickle=False)
        atomic_write_bytes(out, buf.getvalue())
    else:
        lo, hi = write_gray_png(mosaic, out)
        meta["window"] = [lo, hi]
    write_json(_spec_path(out), meta)
    return out


def _read_mosaic(path: Path, meta: dict[str, Any]) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise NeuroditError(f"cannot read .npy mosaic ({exc})", path) from exc
        return np.asarray(m, dtype=np.float32)
    if path.suffix.lower() == ".png":
        from PIL import Image

        if "window" not in meta:
            raise NeuroditError("PNG mosaic spec has no intensity window", _spec_path(path))
        lo, hi = (float(v) for v in meta["window"])
        try:
            with Image.open(path) as img:
                u8 = np.asarray(img.convert("L"), dtype=np.float64)
        except OSError as exc:
            raise NeuroditError(f"cannot read PNG mosaic ({exc})", path) from exc
        return (u8 / 255.0 * (hi - lo) + lo).astype(np.float32)
    raise NeuroditError("mosaic must be a .npy (exact) or .png (8-bit) file", path)


def untile_file(mosaic_path: str | Path, out: str | Path) -> Path:
    """``neurodit untile``: ``MOSAIC.npy`` + ``MOSAIC.json`` -> NIfTI with the original affine.

    ``.npy`` mosaics restore the voxels exactly; ``.png`` ones only to 8-bit precision.
    """
    mosaic_path, out = Path(mosaic_path), Path(out)
    if not mosaic_path.is_file():
        raise NeuroditError("mosaic file not found", mosaic_path)
    spec_file = _spec_path(mosaic_path)
    if not spec_file.is_file():
        raise NeuroditError(f"tiling spec {spec_file.name} not found beside the mosaic", spec_file)
    meta = read_json(spec_file)
    if not isinstance(meta, dict) or "spec" not in meta:
        raise NeuroditError("not a tiling spec (no 'spec' key)", spec_file)
    spec = TilingSpec.from_dict(meta["spec"], where=spec_file)
    mosaic = _read_mosaic(mosaic_path, meta)
    if mosaic.ndim != 2 or tuple(mosaic.shape) != spec.mosaic_shape:
        raise NeuroditError(f"mosaic shape {tuple(mosaic.shape)} does not match its spec "
                            f"{spec.mosaic_shape} ({spec_file.name})", mosaic_path)
    vol = mosaic_to_volume(mosaic, spec)
    affine = spec.affine_array if spec.affine is not None else np.eye(4)
    return write_nifti(vol, affine, out)
