"""Settings of the downstream experiment and the names of its arms (the design: :mod:`neurodit.downstream.experiment`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from neurodit.errors import NeuroditError

SOURCE_ARMS = ("sex/real", "sex/real+synthetic", "sex/synthetic")
TARGET_ARMS = ("ad/scratch", "ad/init-real", "ad/init-real+synthetic")
# the arms that see a synthetic cohort: one of each per named cohort, ``base[name]`` (arm_name)
SYNTHETIC_ARMS = ("sex/real+synthetic", "sex/synthetic", "ad/init-real+synthetic")
# a cohort name goes inside ``[...]`` of an arm name and into model file names
_COHORT_NAME = re.compile(r"[A-Za-z0-9._+-]+")


def arm_name(base: str, cohort: str | None = None) -> str:
    """The arm ``base`` of synthetic cohort ``cohort``: ``sex/synthetic[pca]``; ``base`` itself for an
    unnamed (single) cohort and for the real-only arms."""
    return base if cohort is None or base not in SYNTHETIC_ARMS else f"{base}[{cohort}]"


def split_arm(name: str) -> tuple[str, str | None]:
    """``sex/real+synthetic[dit]`` -> (``sex/real+synthetic``, ``dit``); ``sex/real`` -> (``sex/real``, None)."""
    m = re.fullmatch(r"(.+)\[(.+)\]", name)
    return (m.group(1), m.group(2)) if m else (name, None)


def check_cohort_name(name: str) -> str:
    """``name`` when it can name a synthetic cohort's arms (letters, digits, ``._+-``), else NeuroditError."""
    if not isinstance(name, str) or not _COHORT_NAME.fullmatch(name):
        raise NeuroditError(f"synthetic cohort name {name!r}: use letters, digits and ._+- only (e.g. dit, pca)")
    return name


@dataclass
class DownstreamConfig:
    """Settings of :func:`run_experiment` (all saved in ``run.json`` and ``results.json``)."""

    arch: str = "small"  # small | densenet121 | resnet10
    folds: int = 5
    seeds: int = 3
    seed: int = 0  # seeds used: seed, seed+1, ..., seed+seeds-1
    shape: tuple[int, int, int] = (32, 32, 32)  # common grid (voxels) the cohorts are resampled to
    epochs: int = 20  # maximum epochs per model
    patience: int = 5  # early stopping: epochs without a lower validation loss
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.2  # of the training participants, for early stopping
    freeze_backbone: bool = False  # target arms with a source backbone: train the head only
    include_mci: bool = False  # MCI joins AD as the positive class instead of being dropped
    augment: bool = False  # random intensity gain/offset/noise inside the brain (training only)
    amp: bool = True  # bf16 autocast on CUDA GPUs with bf16 (off on CPU: see models.fit.bf16_supported)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = auto (see auto_threads)
    n_boot: int = 10000  # bootstrap resamples of the paired differences
    # arms to run (names of SOURCE_ARMS / TARGET_ARMS); empty = all. Without target arms no TARGET is
    # needed and no full source models are trained (``neurodit compare`` runs sex/real and
    # sex/real+synthetic only)
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.arms = tuple(self.arms)
        bad = [a for a in self.arms if a not in SOURCE_ARMS + TARGET_ARMS]
        if bad:
            raise NeuroditError(f"unknown downstream arm(s) {', '.join(bad)} "
                                f"(known: {', '.join(SOURCE_ARMS + TARGET_ARMS)})")

    def wanted(self) -> tuple[str, ...]:
        """The arms that run, in SOURCE_ARMS + TARGET_ARMS order."""
        return tuple(a for a in SOURCE_ARMS + TARGET_ARMS if not self.arms or a in self.arms)
