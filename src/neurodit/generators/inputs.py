"""Input adapters: one per diffusion generator kind, the one place that knows what its network sees.

The training loop (``neurodit.train.loop``), the run folder (``neurodit.runs.TrainedRun``) and
``neurodit.sample`` ask the run's adapter (``get_generator(name).inputs``), never the generator's name:

- :class:`MosaicInputs` (``dit``): (N, D, H, W) volumes -> (N, 1, S, S) mosaics (``neurodit.tiling``)
  [-> (N, 4, S/8, S/8) SD-VAE latents for latent presets, ``neurodit.models.LatentCodec``]; the network
  is a DiT of a ``ModelPreset``.
- :class:`VolumeInputs` (``ddpm3d``): (N, D, H, W) -> (N, 1, D, H, W); the network a ``UNet3D`` of
  ``cfg.unet``; the tiling only renders preview mosaics.

Both standardize per pixel when the run does (``neurodit.standardize``): :meth:`InputAdapter.encode` is
``standardize(encode_raw(volumes))`` and :meth:`InputAdapter.decode` its inverse, back to volumes in
the model range. ``channels`` (C of the network input) is the adapter's; ``maps`` (M) the scalar maps per
subject (``prepare --maps md,fa``): volumes come as (N, M, D, H, W) and mosaics carry one channel per map.

An adapter is made twice in a run's life: by ``plan(cfg, prep, prep_dir)`` before training (checks the
prepared grid, writes nothing) and by ``open(run_dir)`` for sampling (reads ``preset.json``,
``tiling.json``, ``standardize.safetensors``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodit.errors import NeuroditError
from neurodit.io import read_json


class InputAdapter(ABC):
    """What every adapter shares: ``preset`` (the network's config, saved as ``preset.json``), ``spec``
    (the ``TilingSpec`` saved as ``tiling.json``; preview mosaics) and the ``standardizer`` (None: raw
    inputs). Subclasses give the network (:meth:`build_model`, :meth:`load_model`), ``input_shape``, the
    raw mapping (:meth:`encode_raw`, :meth:`_decode_raw`, :meth:`preview_mosaics`) and the two ways to
    make one (``plan(cfg, prep, prep_dir)``, ``open(run_dir)``)."""

    codec = None  # a LatentCodec when the network works in a VAE's latent space

    def __init__(self, preset: Any, spec: Any, standardizer: Any = None):
        self.preset, self.spec, self.standardizer = preset, spec, standardizer

    @classmethod
    @abstractmethod
    def plan(cls, cfg: Any, prep: Any, prep_dir: Path) -> InputAdapter:
        """Before training: the adapter for ``cfg`` (a TrainConfig) on the prepared data ``prep``
        (``neurodit.data.prepare.Prepared``), its grid checked against the network (NeuroditError);
        writes nothing."""

    @classmethod
    @abstractmethod
    def open(cls, run_dir: Path) -> InputAdapter:
        """For sampling: the adapter a run folder saved (``preset.json``, ``tiling.json``, standardizer)."""

    @property
    def channels(self) -> int:
        """C of the network input: maps per voxel (1: MD), or latent channels of a VAE."""
        return self.input_shape[0]

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """(C, *spatial) of one network input."""

    def attach_codec(self, device: torch.device, vae=None) -> None:
        """Load what decoding needs beyond the run files (the VAE of latent presets); default: nothing."""
        return None

    def cache_identity(self) -> dict[str, Any] | None:
        """What the cached raw inputs depend on besides the prepared data (``neurodit.train.data.cache_key``
        parts); None: nothing worth caching (the raw inputs are the volumes)."""
        return None

    def fit_standardizer(self, raw: torch.Tensor, kind: str, floor: float) -> torch.Tensor:
        """Fit the per-pixel standardizer on the training inputs ``raw`` (N, C, *spatial) and return them
        standardized (``neurodit.standardize.fit_standardizer``)."""
        from neurodit.standardize import fit_standardizer

        self.standardizer = fit_standardizer(raw, floor, kind)
        return self.standardizer.apply(raw)

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) network space -> raw inputs (model range / latents)."""
        return self.standardizer.invert(x) if self.standardizer is not None else x

    maps = 1  # scalar maps per subject (channels of the volumes, not of a VAE latent)

    def encode(self, volumes: np.ndarray) -> torch.Tensor:
        """(N, D, H, W) [or (N, M, D, H, W)] model-range volumes -> (N, C, *spatial) network inputs
        (standardized if the run is)."""
        raw = self.encode_raw(volumes)
        return self.standardizer.apply(raw) if self.standardizer is not None else raw

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, *spatial) network outputs -> (B, D, H, W) [(B, M, D, H, W) for several maps] float32
        model-range volumes, clamped to [-1, 1]."""
        if self.standardizer is not None:
            x = self.standardizer.invert(x.float())  # standardized -> model range
        return self._decode_raw(x)

    @abstractmethod
    def encode_raw(self, volumes: np.ndarray) -> torch.Tensor:
        """(N, D, H, W) model-range volumes -> (N, C, *spatial) float32 raw inputs on the CPU."""

    @abstractmethod
    def _decode_raw(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, *spatial) raw inputs -> (B, D, H, W) float32 model-range volumes, clamped."""

    @abstractmethod
    def preview_mosaics(self, x: torch.Tensor, *, clamp: bool) -> torch.Tensor:
        """(B, C, *spatial) network space -> (B, maps, M, M) model-range mosaics for the preview PNGs;
        ``clamp`` to [-1, 1] (samples; real inputs are shown as they are)."""

    @abstractmethod
    def build_model(self, cfg: Any, num_classes: int) -> torch.nn.Module:
        """A network for ``num_classes`` classes + the null class (training; ``cfg`` a TrainConfig)."""

    @abstractmethod
    def load_model(self, folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
        """The saved (EMA) network of ``folder`` on ``device`` in eval mode, and its number of classes."""


def with_pixel_head(model: torch.nn.Module, preset: Any) -> torch.nn.Module:
    """``model`` wrapped with a fresh pixel-level head when the preset names one (``pixel_head`` > 0)."""
    if not preset.pixel_head:
        return model
    from neurodit.models.pixel_head import HeadedDiT, PixelHead

    return HeadedDiT(model, PixelHead(preset.in_channels, preset.pixel_head, preset.pixel_head_depth))


def run_maps(run_dir: Path) -> tuple[str, ...]:
    """The several maps of a run (its ``prepare.json`` copy, ``neurodit.data.prepare.maps_of``); () for one."""
    from neurodit.data.prepare import maps_of

    where = Path(run_dir) / "prepare.json"
    return maps_of(read_json(where), where)[0]


def tile_maps(volumes: Any, spec: Any) -> Any:
    """(N, D, H, W) -> (N, 1, S, S) or (N, M, D, H, W) -> (N, M, S, S) mosaics (numpy or torch): each map
    tiled on its own, with one spec."""
    from neurodit.tiling import volume_to_mosaic

    if volumes.ndim == 4:
        return volume_to_mosaic(volumes, spec)[:, None]
    n, m = volumes.shape[:2]
    mos = volume_to_mosaic(volumes.reshape(n * m, *volumes.shape[2:]), spec)  # (N*M, S, S)
    return mos.reshape(n, m, *mos.shape[1:])


def untile_maps(mosaics: Any, spec: Any) -> Any:
    """(B, M, S, S) mosaics -> (B, D, H, W) for one map, (B, M, D, H, W) for several (inverse of
    :func:`tile_maps`)."""
    from neurodit.tiling import mosaic_to_volume

    b, m = mosaics.shape[:2]
    vol = mosaic_to_volume(mosaics.reshape(b * m, *mosaics.shape[2:]), spec)  # (B*M, D, H, W)
    return vol if m == 1 else vol.reshape(b, m, *vol.shape[1:])


def check_grid(prep, preset, prep_dir: Path) -> None:
    """The prepared grid must equal the preset's; else say which ``neurodit prepare`` to run."""
    have, want = tuple(prep.grid.shape), tuple(int(s) for s in preset.grid_shape)
    if have != want:
        try:
            source = read_json(Path(prep_dir) / "prepare.json").get("source", "COHORT_DIR")
        except NeuroditError:
            source = "COHORT_DIR"
        d, h, w = want
        raise NeuroditError(
            f"prepared grid is {'x'.join(map(str, have))} but preset '{preset.name}' needs "
            f"{d}x{h}x{w}: run `neurodit prepare {source} --out {Path(prep_dir)}-{d}x{h}x{w} "
            f"--shape {d} {h} {w}` and train on that folder", prep_dir)


class MosaicInputs(InputAdapter):
    """Mosaics of the axial (``preset.axis``) slices, optionally SD-VAE latents of them (latent presets)."""

    def __init__(self, preset: Any, spec: Any, standardizer: Any = None):
        super().__init__(preset, spec, standardizer)
        self.vae = None  # the VAE the codec uses (given or the preset's), part of the cache identity

    @classmethod
    def plan(cls, cfg: Any, prep: Any, prep_dir: Path) -> MosaicInputs:
        from neurodit.models import load_preset
        from neurodit.tiling import make_spec

        preset = load_preset(cfg.preset, cfg.preset_overrides or None)
        if preset.maps != prep.channels:  # the prepared folder says how many maps a subject has
            import dataclasses

            preset = dataclasses.replace(preset, maps=prep.channels)
        check_grid(prep, preset, prep_dir)
        spec = make_spec(prep.grid.shape, axis=preset.axis, fill=-1.0, affine=prep.grid.affine)
        if spec.mosaic_shape != (preset.mosaic_size, preset.mosaic_size):
            raise NeuroditError(f"tiling gives a {spec.mosaic_shape} mosaic but preset '{preset.name}' "
                                f"expects {preset.mosaic_size}^2")
        return cls(preset, spec)

    @classmethod
    def open(cls, run_dir: Path) -> MosaicInputs:
        from neurodit.models import ModelPreset
        from neurodit.standardize import load_standardizer
        from neurodit.tiling import TilingSpec

        spec = TilingSpec.from_dict(read_json(run_dir / "tiling.json"), run_dir / "tiling.json")
        preset = ModelPreset.from_dict(read_json(run_dir / "preset.json"))
        return cls(preset, spec, load_standardizer(run_dir))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.preset.in_channels, self.preset.sample_size, self.preset.sample_size)

    def attach_codec(self, device: torch.device, vae=None) -> None:
        """Latent presets: the SD-VAE codec on ``device``, with ``vae`` (tests) or the preset's VAE."""
        from neurodit.models import LatentCodec, load_vae

        if self.preset.space == "latent":
            if vae is None:
                if not self.preset.vae:
                    raise NeuroditError(f"preset '{self.preset.name}' is latent but names no vae")
                vae = load_vae(self.preset.vae, self.preset.vae_subfolder)
            self.codec = LatentCodec(vae.to(device), scale=self.preset.latent_scale)
        self.vae = vae

    def cache_identity(self) -> dict[str, Any]:
        vae = self.vae
        return {"tiling": self.spec.to_dict(), "space": self.preset.space,
                "vae": self.preset.vae if vae is None else "given", "scale": self.preset.latent_scale,
                "vae_params": sum(p.numel() for p in vae.parameters()) if vae is not None else 0}

    @property
    def maps(self) -> int:  # type: ignore[override]
        return int(self.preset.maps)

    def encode_raw(self, volumes: np.ndarray) -> torch.Tensor:
        vols = np.asarray(volumes, dtype=np.float32)  # (N, [M,] D, H, W) model range
        mosaics = torch.from_numpy(np.ascontiguousarray(tile_maps(vols, self.spec)))  # (N, M, S, S)
        if self.codec is None:
            return mosaics
        return self.codec.encode(mosaics.to(self.codec.device)).cpu()  # (N, 4, S/8, S/8): maps fill RGB

    def _decode_raw(self, x: torch.Tensor) -> np.ndarray:
        mos = self.codec.decode(x, self.maps) if self.codec is not None else x  # (B, M, S, S)
        mos = mos.clamp(-1.0, 1.0).float().cpu().numpy()
        return np.asarray(untile_maps(mos, self.spec), dtype=np.float32)  # (B, [M,] D, H, W)

    def preview_mosaics(self, x: torch.Tensor, *, clamp: bool) -> torch.Tensor:
        x = self.unstandardize(x)
        if self.codec is not None:
            return self.codec.decode(x, self.maps)  # (B, 4, h, w) -> (B, M, 8h, 8w), clamped by the codec
        return x.clamp(-1, 1) if clamp else x

    def build_model(self, cfg: Any, num_classes: int) -> torch.nn.Module:
        """A fresh DiT for the preset, or ``cfg.init``'s weights adapted to it; label dropout off inside
        the model (the loop drops labels itself, once per sample: diffusers' per-block dropout would let
        different blocks see different labels in one forward)."""
        from neurodit.models import build_dit, load_init
        from neurodit.models.dit import disable_label_dropout, fit_attention

        if cfg.init:
            model = load_init(cfg.init, self.preset, num_classes, seed=cfg.seed)
        else:
            model = build_dit(self.preset, num_classes)
        disable_label_dropout(model)
        return with_pixel_head(fit_attention(model), self.preset)

    def load_model(self, folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
        from diffusers import DiTTransformer2DModel

        from neurodit.models.dit import fit_attention
        from neurodit.models.pixel_head import has_head, load_headed
        from neurodit.weights import load_model_folder

        model = fit_attention(load_model_folder(DiTTransformer2DModel, folder))
        if has_head(folder):
            model = load_headed(model, folder)
        model = model.to(device).eval()
        return model, int(model.config.num_embeds_ada_norm)


class VolumeInputs(InputAdapter):
    """Whole volumes, one channel per map: (N, D, H, W) -> (N, 1, D, H, W), (N, M, D, H, W) as it is."""

    def __init__(self, preset: Any, spec: Any, standardizer: Any = None, maps: int = 1):
        super().__init__(preset, spec, standardizer)
        self.maps = int(maps)

    @classmethod
    def plan(cls, cfg: Any, prep: Any, prep_dir: Path) -> VolumeInputs:
        from neurodit.tiling import make_spec

        cfg.unet.check_grid(prep.grid.shape, prep_dir)
        # the UNet runs on whole volumes; the tiling only renders preview mosaics
        return cls(cfg.unet, make_spec(prep.grid.shape, axis=2, fill=-1.0, affine=prep.grid.affine),
                   maps=prep.channels)

    @classmethod
    def open(cls, run_dir: Path) -> VolumeInputs:
        from neurodit.config import from_dict
        from neurodit.models.unet3d import UNet3DConfig
        from neurodit.standardize import load_standardizer
        from neurodit.tiling import TilingSpec

        spec = TilingSpec.from_dict(read_json(run_dir / "tiling.json"), run_dir / "tiling.json")
        preset = from_dict(UNet3DConfig, read_json(run_dir / "preset.json"), "preset.json")
        return cls(preset, spec, load_standardizer(run_dir), maps=len(run_maps(run_dir)) or 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.maps, *(int(s) for s in self.spec.volume_shape))

    def encode_raw(self, volumes: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(volumes, dtype=np.float32))
        return x[:, None] if x.ndim == 4 else x  # (N, M, D, H, W)

    def _decode_raw(self, x: torch.Tensor) -> np.ndarray:
        x = x.clamp(-1.0, 1.0).float().cpu().numpy()  # (B, M, D, H, W) model range
        return x[:, 0] if self.maps == 1 else x

    def preview_mosaics(self, x: torch.Tensor, *, clamp: bool) -> torch.Tensor:
        mos = tile_maps(self.unstandardize(x), self.spec)  # (B, M, D, H, W) -> (B, M, S, S)
        return mos.clamp(-1, 1) if clamp else mos

    def build_model(self, cfg: Any, num_classes: int) -> torch.nn.Module:
        """A fresh ``UNet3D`` of the preset (``cfg.unet``) with ``num_classes`` + 1 class embeddings."""
        from neurodit.models.unet3d import UNet3D

        if cfg.init:
            raise NeuroditError("train: --init (pretrained DiT weights) applies to generator dit only")
        return UNet3D(self.preset, num_classes, in_channels=self.maps)

    def load_model(self, folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
        from neurodit.models.unet3d import UNet3D
        from neurodit.weights import load_model_folder

        model = load_model_folder(UNet3D, folder).to(device).eval()
        return model, model.num_classes


__all__ = ["InputAdapter", "MosaicInputs", "VolumeInputs", "check_grid", "run_maps", "tile_maps", "untile_maps"]
