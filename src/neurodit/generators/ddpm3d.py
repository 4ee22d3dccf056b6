"""``ddpm3d``: a class-conditional 3D diffusion UNet on whole volumes, the method's predecessor's
3D DDPM (MONAI ``DiffusionModelUNet(spatial_dims=3)``, Pinaya et al. 2023; network in
:mod:`neurodit.models.unet3d`).

No second loop: ``fit`` is ``neurodit.train.train_diffusion`` with ``generator: ddpm3d``, whose input
adapter (:class:`~neurodit.generators.inputs.VolumeInputs`) builds the UNet and feeds it (N, 1, D, H, W)
volumes; the objective (ddpm eps / v / x0, or flow), the classifier-free-guidance sampler, accelerate,
EMA, checkpoints and ``--resume`` are the DiT's. ``sample`` is ``neurodit.sample.sample_diffusion``
(``neurodit.runs.TrainedRun`` opens the UNet through the adapter). Defaults:
``configs/train/ddpm3d.yaml`` (the CPU preset: channels 16/32/64, one residual block per level, no
attention).
"""

from __future__ import annotations

from neurodit.generators.dit import DiffusionGenerator
from neurodit.generators.inputs import VolumeInputs

GENERATOR = DiffusionGenerator("ddpm3d", VolumeInputs, recipe="ddpm3d")  # configs/train/ddpm3d.yaml
