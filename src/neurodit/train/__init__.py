"""Training of the generative core: ``train_dit(cfg) -> run_dir`` (see docs/ARCHITECTURE.md).

- ``TrainConfig``, ``resolve_train_config`` (``neurodit.train.config``): typed config + YAML defaults.
- ``train_dit`` (``neurodit.train.loop``): accelerate loop, EMA, checkpoints, previews.
- ``DiffusionConfig``, ``diffusion_loss``, ``guided_sample``, ``make_sampler`` (``neurodit.train.diffusion``).
"""

from neurodit.train.config import TrainConfig, resolve_train_config
from neurodit.train.diffusion import (
    DiffusionConfig,
    diffusion_loss,
    guided_sample,
    make_noise_scheduler,
    make_sampler,
)
from neurodit.train.loop import train_dit

__all__ = [
    "DiffusionConfig", "TrainConfig", "diffusion_loss", "guided_sample", "make_noise_scheduler",
    "make_sampler", "resolve_train_config", "train_dit",
]
