"""``ddpm3d``: a class-conditional 3D diffusion UNet on whole volumes, the method's predecessor's
3D DDPM (MONAI ``DiffusionModelUNet(spatial_dims=3)``, Pinaya et al. 2023; network in
:mod:`neurodit.models.unet3d`).

No second loop: ``fit`` is ``neurodit.train.train_dit`` with ``generator: ddpm3d``, whose
generator-specific steps build the UNet and feed it (N, 1, D, H, W) volumes; the objective
(ddpm eps / v / x0, or flow), the classifier-free-guidance sampler, accelerate, EMA, checkpoints and
``--resume`` are the DiT's. ``sample`` is ``neurodit.sample.sample`` (``neurodit.runs.TrainedRun``
opens the UNet). Defaults: ``configs/train/ddpm3d.yaml`` (the CPU preset: channels 16/32/64, one
residual block per level, no attention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurodit.generators.base import with_inputs


class DDPM3DGenerator:
    sharded = True  # neurodit.sample.sample shards the batches over launched processes
    name = "ddpm3d"

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        from neurodit.train import train_dit

        return train_dit(with_inputs(cfg, prep_dir, self.name))

    def sample(self, run_dir: str | Path, n: int, out: str | Path, *, label: Any = None, **options: Any) -> Path:
        from neurodit.sample import sample

        return sample(run_dir, n, out, label=label, **options)


GENERATOR = DDPM3DGenerator()
