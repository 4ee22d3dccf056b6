"""Training of the generative core: ``train_diffusion(cfg) -> run_dir`` (see docs/ARCHITECTURE.md).

- ``TrainConfig``, ``resolve_train_config`` (``neurodit.train.config``): typed config + YAML defaults.
- ``train_diffusion`` (``neurodit.train.loop``): accelerate loop, EMA, checkpoints, previews, as named
  steps, for every diffusion generator (the mosaic DiT, the ddpm3d UNet): what differs is the
  generator's input adapter (``neurodit.generators.inputs``).
- the input cache (``neurodit.train.data``).

The diffusion process (schedules, loss, samplers, guidance) is ``neurodit.diffusion``; the run folder
and its labels are ``neurodit.runs``.
"""

from neurodit.train.config import TrainConfig, resolve_train_config
from neurodit.train.loop import train_diffusion

__all__ = ["TrainConfig", "resolve_train_config", "train_diffusion"]
