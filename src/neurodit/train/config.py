"""Typed training configuration (``TrainConfig``) and its YAML defaults.

Resolution order, later wins: ``configs/train/default.yaml`` -> ``configs/train/<preset>.yaml`` (when
it exists) -> ``--config YAML`` -> ``--set key=value`` -> explicit CLI flags. Unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodit.config import CONFIG_DIR, deep_merge, from_dict, read_yaml
from neurodit.diffusion import MIXED_PRECISION, SAMPLERS, DiffusionConfig
from neurodit.errors import NeuroditError

TRAIN_CONFIG_DIR = CONFIG_DIR / "train"


@dataclass
class TrainConfig:
    """Everything ``train_dit`` needs; the resolved copy is saved as ``RUN_DIR/train_config.yaml``.

    Units: ``lr`` per optimiser step; ``ema_decay`` per optimiser step (EMA half-life in steps is
    ln 2 / (1 - decay), i.e. ~69 steps at 0.99); ``batch_size`` mosaics per device per micro-batch.
    """

    prep_dir: str = ""
    out: str = ""
    preset: str = "tiny-p32"
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
    num_threads: int = 0  # CPU intra-op threads; 0 = torch's default. 1 is ~4x faster on a busy CPU
    checkpoint_every: int = 0  # 0: only the final checkpoint
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = False
    overwrite: bool = False
    preview_per_class: int = 2  # preview mosaics rendered at the end, per class
    preview_steps: int = 25
    guidance: float = 2.0  # guidance scale used for previews (sampling default lives in sample.py)
    sampler: str = "ddim"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

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
        if self.sampler not in SAMPLERS:
            raise NeuroditError(f"train config: sampler must be one of {SAMPLERS}")
        if isinstance(self.diffusion, dict):  # from_dict already converts; direct construction may not
            self.diffusion = from_dict(DiffusionConfig, self.diffusion, "diffusion")


def default_train_dict(preset: str) -> dict[str, Any]:
    """The YAML defaults for ``preset``: default.yaml merged with ``<preset>.yaml`` when present."""
    data = read_yaml(TRAIN_CONFIG_DIR / "default.yaml")
    specific = TRAIN_CONFIG_DIR / f"{Path(str(preset)).stem}.yaml"
    if specific.is_file():
        data = deep_merge(data, read_yaml(specific))
    return data


def resolve_train_config(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                         **flags: Any) -> TrainConfig:
    """Merge YAML defaults, an optional user YAML, dotted overrides and CLI flags into a TrainConfig.

    ``flags`` whose value is None are ignored (the CLI passes None for options not given).
    The preset (which picks the preset-specific defaults) is taken from the highest-priority source.
    """
    user = read_yaml(config_file) if config_file else {}
    flags = {k: v for k, v in flags.items() if v is not None}
    preset = flags.get("preset") or (overrides or {}).get("preset") or user.get("preset") or "tiny-p32"
    data = deep_merge(default_train_dict(preset), user)
    data = deep_merge(data, overrides or {})
    data = deep_merge(data, flags)
    return from_dict(TrainConfig, data)
