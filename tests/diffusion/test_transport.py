"""neurodit.diffusion.Diffusion: the one object train/sample/bench hold; works for 2D and 3D inputs."""

from __future__ import annotations

import torch

from neurodit.diffusion import (
    DiffusionConfig,
    autocast_dtype,
    create_diffusion,
    diffusion_loss,
    guided_sample,
    make_noise_scheduler,
    make_sampler,
    mixed_precision_for,
)


class Zero3D(torch.nn.Module):
    """A plain module (returns a tensor, no ``.sample``) on 3D inputs (B, C, D, H, W)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, timestep, class_labels):
        return self.w * x


def test_loss_and_sample_equal_the_functions_and_take_3d_inputs():
    cfg = DiffusionConfig(prediction_type="sample", beta_schedule="squaredcos_cap_v2", snr_gamma=5.0,
                          snr_floor=1.0)
    process = create_diffusion(cfg)
    model = Zero3D()
    x0 = torch.randn(4, 1, 6, 5, 4)
    y = torch.tensor([0, 1, 0, 2])
    a = process.loss(model, x0, y, generator=torch.Generator().manual_seed(0))
    b = diffusion_loss(model, x0, y, make_noise_scheduler(cfg), cfg, generator=torch.Generator().manual_seed(0))
    assert a.ndim == 0 and torch.equal(a, b) and float(a) > 0
    a.backward()
    assert model.w.grad is not None and float(model.w.grad.abs()) > 0
    s1 = process.sample(model, y, 2, (1, 6, 5, 4), kind="ddim", steps=3, guidance=2.0,
                        generator=torch.Generator().manual_seed(1))
    s2 = guided_sample(model, make_sampler("ddim", make_noise_scheduler(cfg)), y, 2, (1, 6, 5, 4), steps=3,
                       guidance=2.0, generator=torch.Generator().manual_seed(1))
    assert s1.shape == (4, 1, 6, 5, 4) and torch.equal(s1, s2) and torch.isfinite(s1).all()


def test_precision_choice():
    assert mixed_precision_for("fp32", "cpu") == "no" and mixed_precision_for("bf16", "cuda") == "bf16"
    assert mixed_precision_for("auto", "cpu") in ("bf16", "no")
    assert autocast_dtype("bf16") == torch.bfloat16 and autocast_dtype("fp16") == torch.float16
    assert autocast_dtype("no") is None
