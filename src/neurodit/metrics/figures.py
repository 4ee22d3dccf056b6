"""Evaluation figures (matplotlib, Agg backend, PNG written atomically).

All image panels of MD share one colour scale in mm²/s; the mosaics use the tiling module's layout
(:func:`neurodit.tiling.volume_to_mosaic`) so they look like what the model was trained on.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neurodit.io import atomic_write_bytes  # noqa: E402

MD_LABEL = "MD (mm²/s)"


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (90 dpi, tight), the figure closed (no figure leaks across calls)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _save(fig, path: Path) -> Path:
    return atomic_write_bytes(path, png_bytes(fig))


def brain_slices(mask: np.ndarray, axis: int = 2, n: int = 9) -> list[int]:
    """``n`` evenly spaced slice indices along ``axis`` among the slices that hold brain."""
    area = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0).reshape(mask.shape[axis], -1).sum(1)
    idx = np.flatnonzero(area > 0.15 * max(area.max(), 1))
    if idx.size == 0:
        idx = np.arange(mask.shape[axis])
    return sorted({int(i) for i in np.linspace(idx[0], idx[-1], min(n, idx.size)).round()})


def mosaic_figure(real: np.ndarray, syn: np.ndarray, mask: np.ndarray, path: Path, vmax: float,
                  n_each: int = 3, axis: int = 2, label: str = MD_LABEL) -> Path:
    """Mosaics of the same axial slices of ``n_each`` real and synthetic volumes (N, D, H, W) mm²/s."""
    from neurodit.mosaic_files import save_mosaic_png
    from neurodit.tiling import make_spec, volume_to_mosaic

    spec = make_spec(real.shape[1:], axis=axis, slices=brain_slices(mask, axis), fill=0.0)
    r, s = real[:n_each], syn[:n_each]
    mosaics = np.concatenate([volume_to_mosaic(np.asarray(r), spec), volume_to_mosaic(np.asarray(s), spec)])
    titles = [f"real {i}" for i in range(len(r))] + [f"synthetic {i}" for i in range(len(s))]
    return save_mosaic_png(mosaics, path, vmin=0.0, vmax=vmax, colorbar_label=label, titles=titles)


def tissue_histogram_figure(real_vals: dict[str, np.ndarray], syn_vals: dict[str, np.ndarray],
                            path: Path) -> Path:
    """Per-tissue MD histograms (density), real vs synthetic; values in mm²/s per class name."""
    names = list(real_vals)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        both = np.concatenate([real_vals[name], syn_vals[name]])
        bins = np.linspace(np.percentile(both, 0.5), np.percentile(both, 99.5), 50) if both.size else 10
        ax.hist(real_vals[name], bins=bins, density=True, alpha=0.5, label="real")
        ax.hist(syn_vals[name], bins=bins, density=True, alpha=0.5, label="synthetic")
        ax.set_title(name)
        ax.set_xlabel(MD_LABEL)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    axes[0][0].set_ylabel("density")
    axes[0][0].legend()
    return _save(fig, path)


def msssim_figure(values: dict[str, np.ndarray], path: Path, title: str = "3D MS-SSIM per pair") -> Path:
    """Histograms of pairwise MS-SSIM for the real-real, real-syn and syn-syn groups."""
    fig, ax = plt.subplots(figsize=(5, 3))
    allv = np.concatenate([v for v in values.values() if len(v)]) if any(len(v) for v in values.values()) \
        else np.zeros(1)
    bins = np.linspace(allv.min(), max(allv.max(), allv.min() + 1e-6), 40)
    for name, v in values.items():
        if len(v):
            ax.hist(v, bins=bins, alpha=0.5, density=True, label=f"{name} (n={len(v)})")
    ax.set_xlabel("MS-SSIM")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def memorization_figure(syn_nn: np.ndarray, heldout_nn: np.ndarray, threshold: float, closest: list[dict],
                        syn: np.ndarray, ref: np.ndarray, path: Path, vmax: float, axis: int = 2) -> Path:
    """Nearest-training correlation histograms (synthetic vs held-out) and the closest pairs (mid slice)."""
    k = max(len(closest), 1)
    fig = plt.figure(figsize=(max(6, 2.2 * k), 7))
    gs = fig.add_gridspec(3, k, height_ratios=[2, 1, 1], hspace=0.6)
    ax = fig.add_subplot(gs[0, :])
    lo = float(min(syn_nn.min(), heldout_nn.min()))
    bins = np.linspace(lo, 1.0, 40)
    ax.hist(heldout_nn, bins=bins, alpha=0.5, density=True, label="real held-out")
    ax.hist(syn_nn, bins=bins, alpha=0.5, density=True, label="synthetic")
    ax.axvline(threshold, color="k", ls="--", label="held-out 99th pct")
    ax.set_xlabel("Pearson r with nearest reference (training) volume, in mask")
    ax.legend(fontsize=8)
    mid = syn.shape[axis + 1] // 2
    for c, pair in enumerate(closest):
        for row, vol in enumerate((syn[pair["synthetic"]], ref[pair["reference"]])):
            a = fig.add_subplot(gs[1 + row, c])
            a.imshow(np.take(vol, mid, axis=axis).T, origin="lower", cmap="gray", vmin=0, vmax=vmax)
            title = f"syn {pair['synthetic']} r={pair['r']:.3f}" if row == 0 else f"nearest: ref {pair['reference']}"
            a.set_title(title, fontsize=7)
            a.axis("off")
    return _save(fig, path)


def coherence_figure(real_profile: np.ndarray, syn_profile: np.ndarray, real: np.ndarray, syn: np.ndarray,
                     path: Path, vmax: float) -> Path:
    """Slice-to-slice correlation along the tiled axis, and mid sagittal/coronal planes (never seen
    by the model) of two real and two synthetic volumes."""
    panels = [(real[i], f"real {i}") for i in range(min(2, len(real)))] + \
             [(syn[i], f"syn {i}") for i in range(min(2, len(syn)))]
    n = len(panels)
    fig = plt.figure(figsize=(10, 7))
    gs = fig.add_gridspec(3, n, height_ratios=[2, 1.2, 1.2], hspace=0.6)
    ax = fig.add_subplot(gs[0, :])
    ax.plot(real_profile, label="real")
    ax.plot(syn_profile, label="synthetic")
    ax.set_xlabel("axial slice k (tiled axis)")
    ax.set_ylabel("corr(slice k, k+1)")
    ax.legend(fontsize=8)
    for c, (vol, name) in enumerate(panels):
        for row, (axis, plane) in enumerate(((0, "sagittal"), (1, "coronal"))):
            a = fig.add_subplot(gs[1 + row, c])
            a.imshow(np.take(vol, vol.shape[axis] // 2, axis=axis).T, origin="lower", cmap="gray",
                     vmin=0, vmax=vmax)
            a.set_title(f"{name} {plane}", fontsize=7)
            a.axis("off")
    return _save(fig, path)
