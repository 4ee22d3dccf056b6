"""Typed training configuration (``TrainConfig``) and its YAML defaults.

Resolution order, later wins: ``configs/train/default.yaml`` -> ``configs/train/<preset>.yaml`` (when
it exists; a generator with a recipe of its own, e.g. ``ddpm3d``, reads ``configs/train/<recipe>.yaml``
instead) -> ``--config YAML`` ->
``--set key=value`` -> explicit CLI flags. Unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodit.config import CONFIG_DIR, deep_merge, from_dict, read_yaml, to_dict
from neurodit.defaults import SAMPLING
from neurodit.diffusion import DDPM_SAMPLERS, FLOW_SAMPLERS, MIXED_PRECISION, DiffusionConfig
from neurodit.errors import NeuroditError
from neurodit.generators import registry
from neurodit.models.unet3d import UNet3DConfig
from neurodit.standardize import STANDARDIZE

TRAIN_CONFIG_DIR = CONFIG_DIR / "train"


@dataclass
class TrainConfig:
    """Everything a generator's ``fit`` (``train_diffusion`` for the diffusion ones) needs; the resolved
    copy is saved as ``RUN_DIR/train_config.yaml``.

    Units: ``lr`` per optimiser step; ``ema_decay`` per optimiser step (EMA half-life in steps is
    ln 2 / (1 - decay), i.e. ~69 steps at 0.99); ``batch_size`` mosaics per device per micro-batch.
    """

    prep_dir: str = ""
    out: str = ""
    generator: str = registry.DEFAULT  # a registered name: dit (mosaic DiT), ddpm3d (3D UNet), pca
    preset: str = "tiny-p32"  # dit only
    preset_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"patch_size": 16}
    init: str | None = None  # hub id, diffusers folder or original DiT .pt
    label: str = "sex"  # a participants column, or "sex*age_bin" (a combined label)
    age_bins: list[float] = field(default_factory=lambda: [50.0, 70.0])  # edges in years for age_bin
    seed: int = 0
    max_steps: int = 600
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.99  # cap of diffusers EMAModel's (1+step)/(10+step) warm-up
    label_dropout: float = 0.1  # p of replacing a sample's label by the null class (CFG)
    mixed_precision: str = "auto"  # auto: bf16 where the device supports it; fp32: none
    num_threads: int = 0  # CPU intra-op threads; 0 = picked at start-up by timing all cores vs 1 (run.json)
    checkpoint_every: int = 0  # 0: only the final checkpoint
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = False
    overwrite: bool = False
    preview_per_class: int = 2  # preview mosaics rendered at the end, per class
    preview_steps: int = SAMPLING.steps
    guidance: float = SAMPLING.guidance  # guidance scale used for previews
    sampler: str = "ddim"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    unet: UNet3DConfig = field(default_factory=UNet3DConfig)  # ddpm3d only
    components: int | None = None  # pca only: keep the K largest principal components (None: all)
    # diffusion generators: train on per-pixel standardized inputs (x - mean) / max(sd, floor) of the
    # training set (neurodit.standardize; saved as RUN_DIR/standardize.safetensors); "none": raw inputs
    standardize: str = "none"
    standardize_floor: float = 0.01  # model units: the scale of pixels constant across training inputs

    def __post_init__(self) -> None:
        checks = {
            "max_steps": self.max_steps >= 1, "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1, "lr": self.lr > 0, "warmup_steps": self.warmup_steps >= 0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0, "label_dropout": 0.0 <= self.label_dropout < 1.0,
            "checkpoint_every": self.checkpoint_every >= 0, "keep_checkpoints": self.keep_checkpoints >= 1,
            "log_every": self.log_every >= 1, "num_threads": self.num_threads >= 0,
            "preview_per_class": self.preview_per_class >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise NeuroditError(f"train config: invalid value for {', '.join(bad)} "
                                f"({', '.join(f'{k}={getattr(self, k)!r}' for k in bad)})")
        if self.mixed_precision not in MIXED_PRECISION:
            raise NeuroditError(f"train config: mixed_precision must be one of {MIXED_PRECISION}")
        if self.generator not in registry.names():
            raise NeuroditError(f"train config: generator must be one of {registry.names()}, "
                                f"got {self.generator!r}")
        if isinstance(self.diffusion, dict):  # from_dict already converts; direct construction may not
            self.diffusion = from_dict(DiffusionConfig, self.diffusion, "diffusion")
        if isinstance(self.unet, dict):
            self.unet = from_dict(UNet3DConfig, self.unet, "unet")
        samplers = FLOW_SAMPLERS if self.diffusion.objective == "flow" else DDPM_SAMPLERS
        if self.sampler not in samplers:
            raise NeuroditError(f"train config: sampler must be one of {samplers} for objective "
                                f"{self.diffusion.objective}, got {self.sampler!r}")
        if self.standardize not in STANDARDIZE:
            raise NeuroditError(f"train config: standardize must be one of {STANDARDIZE}, "
                                f"got {self.standardize!r}")
        if not self.standardize_floor > 0:
            raise NeuroditError(f"train config: standardize_floor must be > 0, got {self.standardize_floor}")
        if self.components is not None and self.components < 1:
            raise NeuroditError(f"train config: components must be >= 1, got {self.components}")


def default_train_dict(preset: str, generator: str = registry.DEFAULT) -> dict[str, Any]:
    """The YAML defaults for ``preset``: default.yaml merged with ``<preset>.yaml`` when present (for a
    generator with a recipe of its own, e.g. ddpm3d: with ``<recipe>.yaml``, its CPU recipe)."""
    data = read_yaml(TRAIN_CONFIG_DIR / "default.yaml")
    # an unknown generator falls through to the preset's recipe: TrainConfig names the valid ones
    recipe = registry.get_generator(generator).recipe if generator in registry.names() else None
    name = recipe or Path(str(preset)).stem
    specific = TRAIN_CONFIG_DIR / f"{name}.yaml"
    if specific.is_file():
        data = deep_merge(data, read_yaml(specific))
    return data


def resolve_train_config(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                         **flags: Any) -> TrainConfig:
    """Merge YAML defaults, an optional user YAML, dotted overrides and CLI flags into a TrainConfig.

    ``flags`` whose value is None are ignored (the CLI passes None for options not given).
    The preset and generator (which pick the specific defaults) are taken from the highest-priority
    source. ``objective`` (a flag: ``ddpm`` or ``flow``) sets ``diffusion.objective``; a run whose
    sampler nobody named and whose YAML sampler belongs to the other objective samples with that
    objective's default (``euler`` for flow, ``ddim`` for ddpm).
    """
    user = read_yaml(config_file) if config_file else {}
    flags = {k: v for k, v in flags.items() if v is not None}
    objective = flags.pop("objective", None)
    if objective is not None:
        flags["diffusion"] = {**flags.get("diffusion", {}), "objective": objective}
    sources = (flags, overrides or {}, user)
    preset = next((s["preset"] for s in sources if s.get("preset")), "tiny-p32")
    generator = next((s["generator"] for s in sources if s.get("generator")), registry.DEFAULT)
    data = deep_merge(default_train_dict(preset, generator), user)
    data = deep_merge(data, overrides or {})
    data = deep_merge(data, flags)
    named_sampler = any("sampler" in s for s in sources)
    if not named_sampler:  # the YAML's sampler belongs to the YAML's objective: follow a changed one
        flow = (data.get("diffusion") or {}).get("objective") == "flow"
        if flow and data.get("sampler") not in FLOW_SAMPLERS:
            data["sampler"] = FLOW_SAMPLERS[0]
        elif not flow and data.get("sampler") not in DDPM_SAMPLERS:
            data["sampler"] = DDPM_SAMPLERS[0]
    return from_dict(TrainConfig, data)


def check_resume_identity(cfg: TrainConfig, run_dir: Path, keys: tuple[str, ...]) -> None:
    """``--resume``: NeuroditError naming every field of ``keys`` (what the run learns) on which ``cfg``
    differs from the run's ``train_config.yaml``, with both values. The saved config is read through
    the dataclass, so keys added since the run was written take their defaults."""
    import yaml

    path = Path(run_dir) / "train_config.yaml"
    saved = yaml.safe_load(path.read_text()) or {}
    try:
        saved = to_dict(from_dict(TrainConfig, saved))
    except NeuroditError:
        pass
    now = to_dict(cfg)
    diff = [k for k in keys if saved.get(k) != now.get(k)]
    if diff:
        raise NeuroditError(f"--resume: {', '.join(diff)} differ from the run's train_config.yaml "
                            f"({', '.join(f'{k}: {saved.get(k)!r} vs {now.get(k)!r}' for k in diff)})", path)
