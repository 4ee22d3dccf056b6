"""The settings of one evaluation (``neurodit evaluate``, and every row of ``neurodit compare``).

Its own module so that the judge's parts (:mod:`neurodit.metrics.families`, ``calibration``) and the
stages that configure it (compare, demo, bench) share it without importing the evaluate stage.
"""

from __future__ import annotations

import dataclasses

from neurodit.errors import NeuroditError


@dataclasses.dataclass
class EvalConfig:
    """Settings of one evaluation (saved in run.json)."""

    protocol: str = "ours"  # "ours" | "paper"
    max_pairs: int = 500  # per MS-SSIM group (real-real, real-syn, syn-syn)
    seed: int = 0
    permutations: int = 500  # MMD permutation test
    bootstrap: int = 1000  # bootstrap resamples for the MS-SSIM CIs
    coherence_pairs: int = 60  # pairs per group for the 2D reformat SSIM
    figures: bool = True
    # torch threads while evaluating (restored after): the metrics are many small tensor ops, and on
    # the shared 2-core machines one thread was 5-9x faster than two (MS-SSIM of 1500 pairs of 32^3:
    # 4.8 s vs 42 s wall at load 10); -1: that one thread up to 64^3 voxels a volume, all cores above (a
    # 2 mm volume's convolutions are large enough to share); 0 keeps torch's setting
    threads: int = -1
    c2st: bool = True  # classifier two-sample test (neurodit.metrics.c2st)
    c2st_real: str = "heldout"  # real side of the C2ST: "heldout" (REAL_DIR) | "train+heldout"
    c2st_views: tuple[str, ...] = ("voxel", "texture", "cnn")
    c2st_folds: int = 5
    c2st_permutations: int = 100  # label permutations of the linear views (p resolution 1/101)
    c2st_cnn_epochs: int = 8
    calibrate: bool = False  # also evaluate the reference generators fitted on train (needs train)
    features: bool = True  # Fréchet distance + precision/recall/density/coverage (neurodit.metrics.features)
    encoder: str | None = None  # a user's encoder file (TorchScript, or safetensors + json); None: our own
    # where our own encoder is cached, keyed by a hash of the training data; None: $NEURODIT_CACHE or
    # ~/.cache/neurodit
    encoder_cache: str | None = None
    morphometry: bool = True  # tissue fractions, brain volume, their age/sex effects
    condition: str = "sex"  # label column the calibration generators are conditioned on

    def __post_init__(self) -> None:
        if self.protocol not in ("ours", "paper"):
            raise NeuroditError(f"unknown protocol '{self.protocol}' (use ours or paper)")
        if self.max_pairs < 1 or self.permutations < 0 or self.bootstrap < 1 or self.coherence_pairs < 1 \
                or self.threads < -1:
            raise NeuroditError("max_pairs, bootstrap and coherence_pairs must be >= 1, permutations >= 0 and "
                                "threads >= -1")
        from neurodit.metrics.c2st import VIEWS

        if self.c2st_real not in ("heldout", "train+heldout"):
            raise NeuroditError(f"unknown c2st_real '{self.c2st_real}' (use heldout or train+heldout)")
        self.c2st_views = tuple(self.c2st_views)
        bad = [v for v in self.c2st_views if v not in VIEWS]
        if bad or not self.c2st_views:
            raise NeuroditError(f"unknown or no C2ST view(s) {bad} (use {', '.join(VIEWS)})")
        if self.c2st_folds < 2 or self.c2st_permutations < 1 or self.c2st_cnn_epochs < 1:
            raise NeuroditError("c2st_folds must be >= 2, c2st_permutations and c2st_cnn_epochs >= 1")


__all__ = ["EvalConfig"]
