"""Model presets: a small registry of DiT sizes, each tied to the prepared grid it needs.

A preset says which prepared grid (``neurodit prepare --shape D H W``) it needs, along which axis that
grid is tiled into a square mosaic, whether the DiT works on pixels or on Stable Diffusion VAE latents,
and the DiT size (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", Table 1:
S = 12 layers x 384, B = 12 x 768, XL = 28 x 1152; the suffix is the patch size).
YAML files live in ``configs/presets/<name>.yaml``; unknown keys are errors. Derived sizes
(``mosaic_size``, ``sample_size``, ``in_channels``, ``out_channels``) are properties, never YAML keys,
so they cannot disagree with the grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurodit.config import CONFIG_DIR, load_config
from neurodit.errors import NeuroditError

PRESET_DIR = CONFIG_DIR / "presets"
SD_VAE_SCALE = 0.18215  # Rombach et al. 2022, Sec. 4.3.2: unit-variance scaling of SD VAE latents
LATENT_CHANNELS = 4  # SD VAE (AutoencoderKL, f=8) latent channels


def mosaic_side(grid_shape: tuple[int, int, int], axis: int) -> int:
    """Pixel side of the square mosaic holding every slice of ``grid_shape`` tiled along ``axis``
    (``neurodit.tiling.make_spec``: smallest square grid of square tiles)."""
    from neurodit.tiling import make_spec

    mh, _ = make_spec(tuple(int(s) for s in grid_shape), axis=axis).mosaic_shape
    return int(mh)


@dataclass(frozen=True)
class ModelPreset:
    """One DiT configuration and the data layout it expects.

    Attributes:
        name: registry name (``tiny``, ``S-8``, ...).
        grid_shape: (D, H, W) voxels of the prepared volume (``neurodit prepare --shape D H W``).
        axis: slicing axis of the (D, H, W) volume for tiling (2 = axial in RAS).
        space: ``"pixel"`` (DiT sees the mosaic, 1 channel) or ``"latent"`` (DiT sees SD VAE latents).
        vae: hub id or local folder of the ``AutoencoderKL`` for latent presets (null for pixel presets;
            may be null for a latent preset only when the caller passes its own VAE, as tests do).
        vae_subfolder: subfolder inside ``vae`` (e.g. ``"vae"`` for a full pipeline repo), or null.
        latent_scale: multiply VAE latents by this (0.18215 for the SD VAE).
        latent_downsample: VAE spatial downsampling factor (8 for the SD VAE).
        num_layers, num_attention_heads, attention_head_dim, patch_size: DiT size; width =
            heads x head_dim.
        learn_sigma: DiT's learned variance: the model outputs 2x in_channels (prediction, then
            variance interpolation); our losses use the first ``in_channels`` channels.
        pixel_head: hidden channels of the light pixel-level head on the DiT's prediction
            (:mod:`neurodit.models.pixel_head`; 0 = none), ``pixel_head_depth`` its 3x3 convolutions.
        pretrained: suggested ``--init`` source for this size (documentation only, never loaded
            automatically), e.g. ``facebook/DiT-XL-2-256``.
        maps: scalar maps per voxel (issue 22: MD, FA, ... as channels): a pixel DiT sees ``maps`` channels;
            a latent one fills the VAE's RGB with up to three maps instead of a grey copy. Set by the input
            adapter from the prepared folder (``prepare --maps``), so a preset YAML leaves it at 1.
        description: one line for ``list_presets`` / help text.
    """

    name: str
    grid_shape: tuple[int, int, int]
    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    patch_size: int
    axis: int = 2
    space: str = "pixel"
    vae: str | None = None
    vae_subfolder: str | None = None
    latent_scale: float = SD_VAE_SCALE
    latent_downsample: int = 8
    learn_sigma: bool = False
    pixel_head: int = 0
    pixel_head_depth: int = 3
    pretrained: str | None = None
    description: str = ""
    maps: int = 1

    def __post_init__(self) -> None:
        where = f"preset '{self.name}'"
        object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))  # lists from JSON
        if len(self.grid_shape) != 3 or any(int(s) < 1 for s in self.grid_shape):
            raise NeuroditError(f"{where}: grid_shape must be three positive ints, got {self.grid_shape}")
        if self.axis not in (0, 1, 2):
            raise NeuroditError(f"{where}: axis must be 0, 1 or 2, got {self.axis}")
        if self.space not in ("pixel", "latent"):
            raise NeuroditError(f"{where}: space must be 'pixel' or 'latent', got {self.space!r}")
        for key in ("num_layers", "num_attention_heads", "attention_head_dim", "patch_size",
                    "latent_downsample"):
            if int(getattr(self, key)) < 1:
                raise NeuroditError(f"{where}: {key} must be >= 1, got {getattr(self, key)}")
        if self.pixel_head < 0 or self.pixel_head_depth < 2:
            raise NeuroditError(f"{where}: pixel_head must be >= 0 and pixel_head_depth >= 2, got "
                                f"{self.pixel_head} and {self.pixel_head_depth}")
        if self.pixel_head and self.space != "pixel":
            raise NeuroditError(f"{where}: a pixel_head needs space 'pixel'")
        if self.maps < 1 or (self.space == "latent" and self.maps > 3):
            raise NeuroditError(f"{where}: maps must be >= 1 (at most 3 for a latent preset: the VAE's RGB), "
                                f"got {self.maps}")
        if self.latent_scale <= 0:
            raise NeuroditError(f"{where}: latent_scale must be > 0, got {self.latent_scale}")
        # The mosaic must split into whole VAE cells and whole patches, else unpatchify fails.
        unit = self.patch_size * (self.latent_downsample if self.space == "latent" else 1)
        if self.mosaic_size % unit:
            raise NeuroditError(
                f"{where}: grid {tuple(self.grid_shape)} tiles to a {self.mosaic_size}^2 mosaic, not a "
                f"multiple of {unit} (patch {self.patch_size}"
                + (f" x VAE /{self.latent_downsample})" if self.space == "latent" else ")")
                + "; change grid_shape or patch_size"
            )

    # ----------------------------------------------------------------- derived sizes
    @property
    def mosaic_size(self) -> int:
        """Pixel side of the square mosaic (rows*tile_h == cols*tile_w)."""
        return mosaic_side(tuple(self.grid_shape), self.axis)

    @property
    def sample_size(self) -> int:
        """Side of the DiT input: the mosaic (pixel) or its VAE latent (mosaic / 8)."""
        if self.space == "latent":
            return self.mosaic_size // self.latent_downsample
        return self.mosaic_size

    @property
    def in_channels(self) -> int:
        """``maps`` for pixel mosaics (1: grey MD), 4 for SD VAE latents."""
        return LATENT_CHANNELS if self.space == "latent" else int(self.maps)

    @property
    def out_channels(self) -> int:
        """in_channels, doubled with ``learn_sigma`` (DiT's learned variance channels)."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def width(self) -> int:
        """Transformer hidden size = heads x head_dim."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def num_tokens(self) -> int:
        """Sequence length: (sample_size / patch_size)^2."""
        return (self.sample_size // self.patch_size) ** 2

    def dit_kwargs(self, num_classes: int) -> dict[str, Any]:
        """Keyword arguments of ``diffusers.DiTTransformer2DModel`` for ``num_classes`` real classes."""
        return {
            "num_attention_heads": self.num_attention_heads,
            "attention_head_dim": self.attention_head_dim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "num_layers": self.num_layers,
            "sample_size": self.sample_size,
            "patch_size": self.patch_size,
            "num_embeds_ada_norm": int(num_classes),
        }

    def num_params(self, num_classes: int = 2) -> int:
        """Parameter count of ``build_dit(self, num_classes)``, by arithmetic (no allocation).

        diffusers keeps one timestep + label embedder per block (docs/NOTES.md), so those count
        ``num_layers`` times, unlike facebookresearch/DiT's single shared embedder.
        """
        w, p, cin, cout = self.width, self.patch_size, self.in_channels, self.out_channels
        lin = lambda i, o: i * o + o  # noqa: E731 - weight + bias
        embed = lin(256, w) + lin(w, w) + (num_classes + 1) * w  # t-MLP (256 sin-cos freqs) + labels
        block = embed + lin(w, 6 * w) + 4 * lin(w, w) + lin(w, 4 * w) + lin(4 * w, w)
        head = lin(w, 2 * w) + lin(w, p * p * cout)
        h, d = self.pixel_head, self.pixel_head_depth  # PixelHead: convs in, mid, out and the FiLM layer
        pixel = (lin(9 * 2 * cin, h) + (d - 2) * lin(9 * h, h) + lin(9 * h, cin) + lin(32, 2 * h * (d - 1))) if h else 0
        return (cin * p * p * w + w) + self.num_layers * block + head + pixel

    def to_dict(self) -> dict[str, Any]:
        """YAML fields plus the derived sizes (for run.json / train_config.yaml)."""
        out = dataclasses.asdict(self)
        out["grid_shape"] = list(self.grid_shape)
        out.update(mosaic_size=self.mosaic_size, sample_size=self.sample_size,
                   in_channels=self.in_channels, out_channels=self.out_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPreset:
        """Inverse of ``to_dict`` (derived keys are dropped, then checked against the result)."""
        data = dict(data)
        derived = {k: data.pop(k) for k in ("mosaic_size", "sample_size", "in_channels", "out_channels")
                   if k in data}
        preset = load_config(cls, data)
        for k, v in derived.items():
            if getattr(preset, k) != v:
                raise NeuroditError(f"preset '{preset.name}': stored {k}={v} but the grid gives "
                                    f"{getattr(preset, k)}")
        return preset


def list_presets() -> list[str]:
    """Names of the presets shipped in ``configs/presets/`` (sorted)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ModelPreset:
    """Load a preset by registry name (``tiny``) or from a YAML file path.

    ``overrides`` is a nested dict merged over the YAML (e.g. ``{"patch_size": 4}``). The preset's
    ``name`` defaults to the file stem. Unknown keys raise NeuroditError.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = PRESET_DIR / f"{text}.yaml"
        if not path.is_file():
            raise NeuroditError(f"unknown model preset '{text}' (known: {', '.join(list_presets())})")
    from neurodit.config import read_yaml

    data = read_yaml(path)
    data.setdefault("name", path.stem)
    try:
        return load_config(ModelPreset, data, overrides)
    except NeuroditError as exc:
        raise NeuroditError(f"{path}: {exc}", path) from None
    except TypeError as exc:  # a required field is missing
        raise NeuroditError(f"{path}: {exc}", path) from None


def describe_presets(names: list[str] | None = None, num_classes: int = 2) -> list[dict[str, Any]]:
    """One row per preset for ``neurodit presets``: sizes, parameter count and the prepare command."""
    rows = []
    for name in names or list_presets():
        p = load_preset(name)
        rows.append({
            "name": p.name, "space": p.space, "grid": "x".join(map(str, p.grid_shape)),
            "mosaic": p.mosaic_size, "dit_input": f"{p.in_channels}x{p.sample_size}^2",
            "tokens": p.num_tokens, "size": f"{p.num_layers}x{p.width} /{p.patch_size}",
            "params_M": round(p.num_params(num_classes) / 1e6, 1), "init": p.pretrained or "-",
            "prepare": f"neurodit prepare DATA --out PREP --shape {' '.join(map(str, p.grid_shape))}",
        })
    return rows
