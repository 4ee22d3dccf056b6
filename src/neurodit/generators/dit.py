"""``dit``: the mosaic Diffusion Transformer generator (Peebles & Xie 2023 on 2D mosaics of 3D MD
maps, Chattopadhyay et al. 2025): ``neurodit.train.train_dit`` and ``neurodit.sample.sample``
behind the interface of :mod:`neurodit.generators.base`, unchanged (all presets, ``--init``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurodit.generators.base import with_inputs


class DiffusionGenerator:
    """A diffusion generator (``dit``, ``ddpm3d``): one training loop, one sampler; the run's
    ``generator`` picks the network."""

    sharded = True  # neurodit.sample.sample shards the batches over launched processes

    def __init__(self, name: str):
        self.name = name

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        from neurodit.train import train_dit

        return train_dit(with_inputs(cfg, prep_dir, self.name))

    def sample(self, run_dir: str | Path, n: int, out: str | Path, *, label: Any = None, **options: Any) -> Path:
        from neurodit.sample import sample

        return sample(run_dir, n, out, label=label, **options)


GENERATOR = DiffusionGenerator("dit")
