"""``neurodit pretrain``: a DiT of a preset's architecture trained on natural images, as an ``--init`` source.

The method's thesis (Chattopadhyay et al. 2025) is that a DiT pretrained on natural images (ImageNet,
Peebles & Xie 2023) transfers to mosaics of brain slices. Those weights cannot be downloaded here (and are
CC-BY-NC), so this stage builds the miniature offline: natural images that ship inside installed packages
(scikit-image's ``skimage.data``, scikit-learn's ``load_sample_images``) or a folder of the user's.

How it reuses the finetune's objective with no second training loop:
natural image -> random rescale, square crop, horizontal flip, grey -> one mosaic-sized image in [-1, 1]
(M x M, M = ``preset.mosaic_size``) -> untiled onto the preset's grid (``neurodit.tiling.mosaic_to_volume``,
exact: the adapter tiles it back to the same pixels, the cells past the last slice aside, which become the
mosaic's fill as in every brain mosaic) -> a prepared folder (``neurodit.data.prepare``'s file names) ->
``neurodit.train.train_diffusion``: the same adapter, standardization, objective, sampler and EMA as the
finetune it feeds. ``RUN/model`` is then a diffusers folder that ``neurodit train --init RUN/model`` loads
like any other source (class table replaced with ours, every shape checked: ``neurodit.models.load_init``).
Image stacks (``lfw_subset``: 200 face / non-face crops of 25 x 25) fill the mosaic tile by tile instead,
one random member per cell, rescaled to the tile: a mosaic of small pictures, as a brain mosaic is.

Standardization: the recipe's, except ``highpass`` becomes ``pixel`` (per-pixel sd): natural images vary
mostly at coarse scales, so scaled by their fine texture they would reach the network at sd ~6 instead of
the brain mosaics' ~1. The finetune fits its own standardizer on its brains, whatever the source did.

Colour: a pixel preset sees grey crops (one channel, as an MD mosaic); a latent preset sees the SD-VAE
latents of the RGB crops (``rgb`` None = by the preset's space): the crops are written as three maps
(``red``, ``green``, ``blue``, window [0, 1]; ``neurodit.data.prepare.write_prepared``) and the input adapter
fills the VAE's RGB with them (``neurodit.models.LatentCodec``: map k -> image channel k), as the ImageNet DiT
saw its photos. Grey photos and face stacks give equal channels. The DiT's input (4 latent channels) is the same
either way, so the model initialises a one-map latent finetune unchanged.

RUN (``neurodit.train`` layout) plus ``images.json``: every image used (name, source, shape, licence and
credit as the package documents it, crops drawn from it) and the crop recipe; ``crops.png``: the first crops.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurodit.errors import NeuroditError
from neurodit.io import write_json

IMAGES_FILE = "images.json"
CROPS_PNG = "crops.png"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# participants.tsv columns of the crops folder: label "dataset" (one class: unconditional but for the null
# row) or "image" (the image id as class)
LABELS = {"none": "dataset", "image": "image"}

# skimage.data images in the 0.26 wheel (no network), with the licence each function's docstring states
# (read 2026-12-07 from the installed package; "not stated" where the docstring gives none)
SKIMAGE_IMAGES: dict[str, str] = {
    "astronaut": "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
    "brick": "CC0 (CC0Textures, Bricks25)",
    "camera": "CC0 (photographer Lav Varshney)",
    "cat": "CC0 (photographer Stefan van der Walt)",
    "cell": "CC0 (Guck lab, dedicated to the public domain)",
    "clock": "public domain (photographer Stefan van der Walt)",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "coins": "no known copyright restrictions (Brooklyn Museum collection)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures, Gravel04)",
    "hubble_deep_field": "public domain (NASA)",
    "immunohistochemistry": "no known copyright restrictions",
    "microaneurysms": "CC0 (owner Andreas Maier)",
    "moon": "not stated in skimage's docs",
    "page": "not stated in skimage's docs",
    "retina": "CC0 1.0 (Häggström, Wikimedia Commons)",
    "rocket": "public domain (SpaceX)",
    "text": "public domain ('No known copyright restrictions, released into the public domain')",
    "lfw_subset": "not stated in skimage's docs (100 face / 100 non-face crops of Labeled Faces in the Wild, "
                  "news photographs collected from the web)",
}
SKLEARN_IMAGES: dict[str, str] = {  # sklearn/datasets/images/README.txt
    "china.jpg": "CC BY 2.0 (Flickr, danielbuechele)",
    "flower.jpg": "CC BY 2.0 (Flickr photo of user vultilion; the README names danielbuechele as attribution)",
}


@dataclasses.dataclass
class NaturalImage:
    """One source image: ``pixels`` float32 in [0, 1], grey (H, W), colour (H, W, 3) (``colour`` True), or
    (K, H, W) for a stack of small grey images that fill a mosaic tile by tile; ``licence`` as its package (or
    folder) states it."""

    name: str
    source: str
    pixels: np.ndarray
    licence: str
    colour: bool = False

    @property
    def is_stack(self) -> bool:
        return self.pixels.ndim == 3 and not self.colour

    def view(self, rgb: bool) -> np.ndarray:
        """The pixels as crops take them: grey (ITU-R 601 luma of a colour image, min-max to [0, 1]) or RGB
        (H, W, 3) (a grey image repeated; stacks stay (K, H, W) and are repeated per tile)."""
        if rgb:
            return self.pixels if self.colour or self.is_stack else np.repeat(self.pixels[..., None], 3, axis=-1)
        return _grey01(self.pixels) if self.colour else self.pixels

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "shape": list(self.pixels.shape),
                "licence": self.licence}


def _pixels01(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """Any uint8 / bool / float image -> (float32 in [0, 1], colour?): RGB(A) keeps its three channels (one
    min-max over all of them), anything else goes through :func:`_grey01`."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3]
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else a
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(a)), True
    return _grey01(a), False


def _grey01(img: np.ndarray) -> np.ndarray:
    """Any uint8 / bool / float image, grey or RGB(A) -> float32 grey in [0, 1] (ITU-R 601 luma)."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(a)


def _skimage_images() -> list[NaturalImage]:
    try:
        import skimage.data as data
    except ImportError as exc:  # a dependency of the package; a broken install says so
        raise NeuroditError(f"--images skimage needs scikit-image ({exc})") from None
    out = []
    for name, licence in SKIMAGE_IMAGES.items():
        img = getattr(data, name)()
        colour = False
        if name == "lfw_subset":  # (200, 25, 25) float in [0, 1]
            pixels = np.stack([_grey01(x) for x in img])
        else:
            pixels, colour = _pixels01(img)
        out.append(NaturalImage(name, f"scikit-image {_version('skimage')} skimage.data.{name}", pixels, licence,
                                colour))
    return out


def _sklearn_images() -> list[NaturalImage]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    out = []
    for img, f in zip(bunch.images, bunch.filenames, strict=True):
        pixels, colour = _pixels01(img)  # (427, 640, 3) uint8 photos
        out.append(NaturalImage(Path(f).name, f"scikit-learn {_version('sklearn')} load_sample_images()", pixels,
                                SKLEARN_IMAGES.get(Path(f).name, "see sklearn/datasets/images/README.txt"), colour))
    return out


def _folder_images(folder: Path) -> list[NaturalImage]:
    """Every image file directly in ``folder``; the licence from ``LICENSE*`` / ``README*`` there (its first
    line), else "unknown (user folder)"."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise NeuroditError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder", folder)
    notes = sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper().startswith(("LICENSE", "LICENCE",
                                                                                              "README")))
    licence = "unknown (user folder)"
    if notes:
        first = next((ln.strip() for ln in notes[0].read_text(errors="replace").splitlines() if ln.strip()), "")
        licence = f"{first} (from {notes[0].name})" if first else licence
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                pixels, colour = _pixels01(np.asarray(im.convert("RGB" if im.mode not in ("L", "1", "I", "F", "I;16")
                                                                else "L")))
        except (UnidentifiedImageError, OSError) as exc:
            raise NeuroditError(f"cannot read the image ({exc})", f) from None
        out.append(NaturalImage(f.name, str(f.resolve()), pixels, licence, colour))
    return out


def _version(module: str) -> str:
    import importlib

    return str(getattr(importlib.import_module(module), "__version__", "?"))


def load_images(images: str | Path) -> list[NaturalImage]:
    """``skimage`` | ``sklearn`` | a folder of image files -> the natural images, grey in [0, 1]."""
    text = str(images)
    loaders: dict[str, Callable[[], list[NaturalImage]]] = {"skimage": _skimage_images, "sklearn": _sklearn_images}
    if text in loaders:
        return loaders[text]()
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise NeuroditError("--images must be skimage, sklearn or a folder of images", folder)
    return _folder_images(folder)


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(img, shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def make_crops(images: list[NaturalImage], spec: Any, n: int, seed: int = 0,
               scale: tuple[float, float] = (0.3, 1.0), rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` mosaic-sized crops (n, M, M) float32 in [-1, 1] [``rgb``: (n, 3, M, M)] and the source image index
    of each (n,). The random draws do not depend on ``rgb``: the RGB crops are the grey crops' colour twins.

    Images are drawn uniformly (each image, not each pixel, is equally likely); a crop is a random square of
    side ``scale`` x the image's shorter side (uniform in ``scale``), rescaled to M x M, flipped left-right
    with p 0.5. A stack fills the ``spec.rows`` x ``spec.cols`` tiles with random members (each flipped with
    p 0.5), rescaled to the tile. ``spec``: the preset's ``neurodit.tiling.TilingSpec``.
    """
    if n < 1 or not images:
        raise NeuroditError(f"need at least one image and one crop, got {len(images)} images and n={n}")
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise NeuroditError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
    rng = np.random.default_rng(seed)
    m = spec.mosaic_shape[0]
    th, tw = spec.tile_shape
    crops = np.empty((n, m, m, 3) if rgb else (n, m, m), dtype=np.float32)
    which = rng.integers(0, len(images), size=n)
    for i, k in enumerate(which):
        px = images[k].view(rgb)  # (H, W), (H, W, 3) or a stack (K, h, w)
        if images[k].is_stack:
            tiles = px[rng.integers(0, len(px), size=spec.rows * spec.cols)]
            flips = rng.random(len(tiles)) < 0.5
            cells = [_resize(t[:, ::-1] if f else t, (th, tw)) for t, f in zip(tiles, flips, strict=True)]
            crop = np.block([[cells[r * spec.cols + c] for c in range(spec.cols)] for r in range(spec.rows)])
            crop = np.repeat(crop[..., None], 3, axis=-1) if rgb else crop
        else:
            h, w = px.shape[:2]
            side = max(2, int(round(rng.uniform(lo, hi) * min(h, w))))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = _resize(px[y:y + side, x:x + side], (m, m))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
        crops[i] = np.clip(crop, 0.0, 1.0) * 2.0 - 1.0  # [0, 1] -> model range [-1, 1]
    if rgb:
        crops = np.ascontiguousarray(crops.transpose(0, 3, 1, 2))  # (n, M, M, 3) -> (n, 3, M, M)
    return crops, which.astype(np.int64)


RGB_MAPS = ("red", "green", "blue")  # the channels of RGB crops, as maps of window [0, 1]


def write_crops_folder(crops: np.ndarray, which: np.ndarray, images: list[NaturalImage], preset: Any,
                       out: Path, dataset: str) -> Path:
    """The crops as a prepared folder on ``preset``'s grid (``neurodit.data.prepare.write_prepared``: volumes,
    an all-true mask, participants.tsv with ``dataset`` and ``image`` columns), so ``train_diffusion`` trains on
    them as on brains. Each crop is untiled exactly; grey crops (N, M, M) are one map, RGB crops (N, 3, M, M)
    three (:data:`RGB_MAPS`)."""
    from neurodit.data.grid import make_grid
    from neurodit.data.maps import custom_map, get_map
    from neurodit.data.prepare import write_prepared
    from neurodit.generators.inputs import untile_maps
    from neurodit.tiling import make_spec

    grid = make_grid(preset.grid_shape)
    spec = make_spec(grid.shape, axis=preset.axis, fill=-1.0, affine=grid.affine)
    mos = crops[:, None] if crops.ndim == 3 else crops  # (N, C, M, M)
    vols = np.asarray(untile_maps(mos, spec), dtype=np.float32)  # (N, D, H, W) or (N, 3, D, H, W)
    table = pd.DataFrame({"participant_id": [f"crop-{i:05d}" for i in range(len(crops))],
                          "dataset": dataset, "image": [images[k].name for k in which]})
    # the windows only give the folder the normalisation every prepared folder has; the crops are already in
    # [-1, 1] and are never converted to physical units
    if mos.shape[1] == 1:
        norms = {"md": get_map("md").normalization()}
    else:
        norms = {m: custom_map(m, "1", (0.0, 1.0), out).normalization() for m in RGB_MAPS}
    return write_prepared(out, vols, np.ones(grid.shape, dtype=bool), table, grid, norms,
                          f"natural images ({dataset})", extra={"natural_images": True}, overwrite=True)


def pretrain(images: str | Path, preset: str, out: str | Path, *, max_steps: int | None = None,
             n_crops: int = 1024, label: str = "none", seed: int = 0, scale: tuple[float, float] = (0.3, 1.0),
             overrides: dict[str, Any] | None = None, overwrite: bool = False, crops_dir: str | Path | None = None,
             vae=None, rgb: bool | None = None) -> Path:
    """Train a DiT of ``preset`` on random crops of natural ``images`` (see the module docstring); returns RUN.

    ``label``: ``none`` (one class and the null row: unconditional in effect) or ``image`` (the image id as
    class). ``overrides``: TrainConfig keys over the preset's recipe (``configs/train/<preset>.yaml``), as for
    ``neurodit train``. ``crops_dir``: keep the crops' prepared folder there (default: a temporary folder,
    removed at the end; ``images.json`` records the recipe and seed that redraw it). ``rgb``: colour crops
    through the VAE (None: for a latent preset; a pixel preset stays grey, as the MD mosaics it will see).
    """
    from neurodit.generators.registry import DEFAULT
    from neurodit.models import load_preset
    from neurodit.tiling import make_spec
    from neurodit.train import resolve_train_config, train_diffusion

    if label not in LABELS:
        raise NeuroditError(f"--label must be one of {', '.join(LABELS)}, got {label!r}")
    out = Path(out)
    p = load_preset(preset, (overrides or {}).get("preset_overrides") or None)
    imgs = load_images(images)
    dataset = str(images) if str(images) in ("skimage", "sklearn") else Path(images).name
    spec = make_spec(tuple(p.grid_shape), axis=p.axis, fill=-1.0)
    rgb = p.space == "latent" if rgb is None else bool(rgb)
    if rgb and p.space != "latent":
        raise NeuroditError(f"pretrain: RGB crops need a latent preset (the VAE's colour channels); '{preset}' is "
                            "a pixel preset, whose DiT sees grey mosaics")
    crops, which = make_crops(imgs, spec, n_crops, seed=seed, scale=scale, rgb=rgb)
    tmp_root = None
    if crops_dir is None:
        tmp_root = Path(tempfile.mkdtemp(prefix="neurodit-pretrain-"))
        crops_dir = tmp_root / "crops"
    try:
        write_crops_folder(crops, which, imgs, p, Path(crops_dir), dataset)
        flags: dict[str, Any] = {"prep_dir": str(crops_dir), "out": str(out), "preset": str(preset),
                                 "generator": DEFAULT, "label": LABELS[label], "seed": seed,
                                 "max_steps": max_steps, "overwrite": overwrite or None}
        cfg = resolve_train_config(None, dict(overrides or {}), **flags)
        if cfg.standardize == "highpass" and "standardize" not in (overrides or {}):
            # natural images vary mostly at coarse scales: scaled by their fine texture (highpass) they sit at
            # sd 6.3 in the network's space, against 1.1 for the demo's brain mosaics (256 crops vs 60 phantom
            # subjects, measured 2026-12-07); per-pixel sd scaling gives them 0.94
            cfg = dataclasses.replace(cfg, standardize="pixel")
        if cfg.init:
            raise NeuroditError("pretrain: init must be empty (this stage makes an --init source)")
        run = train_diffusion(cfg, vae=vae)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    counts = np.bincount(which, minlength=len(imgs))
    write_json(run / IMAGES_FILE, {
        "images": [{**im.describe(), "crops": int(c)} for im, c in zip(imgs, counts, strict=True)],
        "dataset": dataset, "n_crops": int(n_crops), "seed": seed, "label": label,
        "colour": "RGB through the VAE (maps red, green, blue)" if rgb else "grey",
        "crop": {"scale_of_shorter_side": list(scale), "flip_left_right": 0.5, "size": list(spec.mosaic_shape),
                 "grey": "ITU-R 601 luma, then min-max to [0, 1], then [-1, 1]",
                 "rgb": "min-max over the three channels to [0, 1], then [-1, 1]; grey images repeated",
                 "stacks": "one random member per tile, rescaled to the tile"},
        "crops_dir": None if tmp_root is not None else str(crops_dir),
        "use": f"neurodit train PREP_DIR --init {run / 'model'} --preset {preset}",
    })
    _crops_png(crops[:16] if crops.ndim == 3 else crops[:16].mean(axis=1), run / CROPS_PNG)
    return run


def _crops_png(crops: np.ndarray, path: Path) -> None:
    """The first crops side by side (grey, [-1, 1])."""
    from neurodit.mosaic_files import save_mosaic_png

    save_mosaic_png(crops, path, vmin=-1.0, vmax=1.0)


def read_images(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/images.json`` of a pretrain run (NeuroditError naming the file when absent)."""
    from neurodit.io import read_json

    path = Path(run_dir) / IMAGES_FILE
    if not path.is_file():
        raise NeuroditError("not a pretrain run (no images.json)", path)
    return read_json(path)


__all__ = ["IMAGES_FILE", "NaturalImage", "load_images", "make_crops", "pretrain", "read_images",
           "write_crops_folder"]
