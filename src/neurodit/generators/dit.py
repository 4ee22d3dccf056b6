"""``dit``: the mosaic Diffusion Transformer generator (Peebles & Xie 2023 on 2D mosaics of 3D MD
maps, Chattopadhyay et al. 2025): ``neurodit.train.train_diffusion`` and
``neurodit.sample.sample_diffusion`` behind the interface of :mod:`neurodit.generators.base`, with the
mosaic input adapter (:class:`~neurodit.generators.inputs.MosaicInputs`: every preset, ``--init``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurodit.generators.base import with_inputs
from neurodit.generators.inputs import InputAdapter, MosaicInputs


class DiffusionGenerator:
    """A diffusion generator (``dit``, ``ddpm3d``): one training loop, one sampler; its input adapter
    ``inputs`` (an :class:`~neurodit.generators.inputs.InputAdapter` class) gives the network and what
    it sees."""

    sharded = True  # neurodit.sample.sample_diffusion shards the batches over launched processes

    def __init__(self, name: str, inputs: type[InputAdapter], recipe: str | None = None):
        self.name, self.inputs, self.recipe = name, inputs, recipe

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        from neurodit.train import train_diffusion

        return train_diffusion(with_inputs(cfg, prep_dir, self.name))

    def sample(self, run_dir: str | Path, n: int | None, out: str | Path, *, label: Any = None,
               match: str | Path | None = None, **options: Any) -> Path:
        from neurodit.sample import sample_diffusion

        return sample_diffusion(run_dir, n, out, label=label, match=match, **options)


GENERATOR = DiffusionGenerator("dit", MosaicInputs)
