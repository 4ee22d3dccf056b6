"""Figures for the HTML report, rendered with matplotlib (Agg) into PNG bytes.

All MD values are in mm²/s; colour bars and histogram axes say so. Volumes arrive as arrays in RAS
(D, H, W), read by the data layer (``neurodit.data``); nothing here opens a file.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from neurodit.tiling import make_spec, volume_to_mosaic  # noqa: E402

DPI = 90
MD_UNIT = "MD (10⁻³ mm²/s)"  # axes show MD × 1000: 0.7 reads better than 7e-4
_MILLI = FuncFormatter(lambda v, _pos: f"{v * 1e3:g}")


def _md_colorbar(fig, im, axes) -> None:
    """One shared colour bar in 10⁻³ mm²/s for all ``axes``."""
    cbar = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.02)
    cbar.set_label(MD_UNIT)
    cbar.ax.yaxis.set_major_formatter(_MILLI)


def fig_to_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (no figure leaks across a report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor=fig.get_facecolor())
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------- volumes
def brain_values(vol: np.ndarray) -> np.ndarray:
    """MD of brain voxels: MD is 0 outside the brain by the input contract, so keep values > 0."""
    return vol[vol > 0]


def display_vmax(volumes: list[np.ndarray]) -> float:
    """Upper end of the shared colour scale: the 99.5th percentile of brain MD (CSF ~3e-3 mm²/s)."""
    vals = np.concatenate([brain_values(v) for v in volumes]) if volumes else np.zeros(0)
    return float(np.percentile(vals, 99.5)) if vals.size else 3.0e-3


# --------------------------------------------------------------------------- mosaics
def _display_slices(vol: np.ndarray, n: int = 16) -> list[int]:
    """Up to ``n`` evenly spaced axial slice indices inside the brain's extent along axis 2."""
    nonzero = np.flatnonzero((vol > 0).any(axis=(0, 1)))
    lo, hi = (int(nonzero[0]), int(nonzero[-1])) if nonzero.size else (0, vol.shape[2] - 1)
    return sorted(set(np.linspace(lo, hi, min(n, hi - lo + 1)).round().astype(int).tolist()))


def display_mosaic(vol: np.ndarray, n: int = 16) -> np.ndarray:
    """Axial mosaic of a RAS volume for display: anterior up, subject's left on the left.

    Uses ``neurodit.tiling`` (the same square tiling the model sees) on the selected slices.
    (D=x, H=y, W=z) -> (H, D, W) with y flipped, so each tile is (y down-to-up, x left-to-right)
    -> (rows*th, cols*tw).
    """
    disp = np.ascontiguousarray(np.flip(np.swapaxes(vol, 0, 1), axis=0))  # (H, D, W)
    slices = _display_slices(vol, n)
    spec = make_spec(disp.shape, axis=2, slices=tuple(slices), fill=0.0)
    return np.asarray(volume_to_mosaic(disp, spec), dtype=np.float32)


def mosaic_grid_figure(panels: dict[str, dict[str, np.ndarray | None]], vmax: float) -> bytes:
    """Rows = classes, columns = sources (e.g. real, synthetic); one shared mm²/s colour bar.

    ``panels[class][source]`` is a 2D mosaic in mm²/s, or None (drawn as "none").
    """
    classes = list(panels)
    sources = list(dict.fromkeys(s for row in panels.values() for s in row))
    fig, axes = plt.subplots(len(classes), len(sources), figsize=(3.6 * len(sources) + 0.8,
                                                                    3.6 * len(classes)), squeeze=False)
    im = None
    for i, cls in enumerate(classes):
        for j, src in enumerate(sources):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            mosaic = panels[cls].get(src)
            if mosaic is None:
                ax.text(0.5, 0.5, f"no {src} volume", ha="center", va="center", transform=ax.transAxes)
            else:
                im = ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{src} · {cls}", fontsize=11)
    if im is not None:
        _md_colorbar(fig, im, axes.ravel().tolist())
    return fig_to_png(fig)


def three_plane_figure(vol: np.ndarray, zooms: np.ndarray, vmax: float, title: str) -> bytes:
    """Axial, coronal and sagittal centre-of-brain slices of one RAS volume with a mm²/s colour bar.

    Aspect ratios come from the voxel sizes (mm) so anisotropic grids are not stretched.
    """
    mask = vol > 0
    centre = [int(np.median(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k)))))
              if mask.any() else vol.shape[k] // 2 for k in range(3)]
    x, y, z = centre
    # each view as (vertical, horizontal) with origin lower: sagittal (z, y), coronal (z, x), axial (y, x)
    views = [
        ("axial", vol[:, :, z].T, zooms[1] / zooms[0]),
        ("coronal", vol[:, y, :].T, zooms[2] / zooms[0]),
        ("sagittal", vol[x, :, :].T, zooms[2] / zooms[1]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    im = None
    for ax, (name, img, aspect) in zip(axes, views, strict=True):
        im = ax.imshow(img, cmap="gray", vmin=0.0, vmax=vmax, origin="lower", aspect=aspect,
                       interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    _md_colorbar(fig, im, axes.tolist())
    fig.suptitle(title)
    return fig_to_png(fig)


def histogram_figure(values: dict[str, dict[str, np.ndarray]], vmax: float) -> bytes:
    """MD histograms of brain voxels: one panel per class, one density curve per source."""
    classes = list(values)
    fig, axes = plt.subplots(1, len(classes), figsize=(3.6 * len(classes), 3.0), squeeze=False)
    # the range covers every source's 99.9th percentile: an over-bright generator must show, not be cut off
    tops = [float(np.percentile(v, 99.9)) for c in values.values() for v in c.values() if v.size]
    bins = np.linspace(0.0, max([vmax, *tops]) * 1.05, 60)
    for ax, cls in zip(axes[0], classes, strict=True):
        for src, vals in values[cls].items():
            if vals.size:
                ax.hist(vals, bins=bins, density=True, histtype="step", linewidth=1.8,
                        label=f"{src}, median {np.median(vals) * 1e3:.3f}")
        ax.set_title(cls)
        ax.set_xlabel(MD_UNIT)
        ax.xaxis.set_major_formatter(_MILLI)
        ax.set_yticks([])
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("density (brain voxels)")
    return fig_to_png(fig)


# --------------------------------------------------------------------------- curves
def loss_figure(steps: np.ndarray, loss: np.ndarray) -> bytes:
    """Training loss per step (log scale) with an exponential moving average (span ~ 2% of steps)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(steps, loss, color="#9ab", linewidth=0.8, label="loss")
    if len(loss) >= 10:
        span = max(5, len(loss) // 50)
        smooth = pd.Series(loss).ewm(span=span).mean().to_numpy()
        ax.plot(steps, smooth, color="#d35400", linewidth=2, label=f"EMA (span {span})")
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig_to_png(fig)


def interval_figure(rows: list[tuple[str, float, float | None, float | None]], xlabel: str,
                    ref: float | None = None, bounds: tuple[float, float] | None = None) -> bytes:
    """Forest plot: one row per (label, estimate, CI low, CI high); optional vertical reference line.

    ``bounds`` (e.g. (0, 1) for balanced accuracy) clips the x axis: a t-interval from 2 runs can
    span far beyond the metric's range, and would squash every other interval.
    """
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.2))
    ys = np.arange(len(rows))[::-1]
    for y, (_, est, lo, hi) in zip(ys, rows, strict=True):
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color="#2c3e50", linewidth=2)
        ax.plot([est], [y], "o", color="#d35400", markersize=7)
    if ref is not None:
        ax.axvline(ref, color="#888", linestyle="--", linewidth=1)
    if bounds is not None:
        lo, hi = ax.get_xlim()
        ax.set_xlim(max(lo, bounds[0] - 0.02), min(hi, bounds[1] + 0.02))
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return fig_to_png(fig)
