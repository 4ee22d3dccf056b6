"""The diffusion objective and the guided sampler, checked against an oracle that knows x0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodit.diffusion import (
    DiffusionConfig,
    diffusion_loss,
    guided_sample,
    make_noise_scheduler,
    make_sampler,
)
from neurodit.errors import NeuroditError


class Oracle(torch.nn.Module):
    """Predicts the exact target for a fixed clean image x0 (1, C, S, S): a perfect denoiser."""

    def __init__(self, x0: torch.Tensor, scheduler, prediction_type: str):
        super().__init__()
        self.x0, self.s, self.pt = x0, scheduler, prediction_type
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, xt, timestep, class_labels):
        ac = self.s.alphas_cumprod[timestep].view(-1, 1, 1, 1)
        x0 = self.x0.expand_as(xt)
        eps = (xt - ac.sqrt() * x0) / (1 - ac).sqrt()
        out = {"epsilon": eps, "sample": x0, "v_prediction": ac.sqrt() * eps - (1 - ac).sqrt() * x0}[self.pt]
        return type("Out", (), {"sample": out + 0 * self.dummy})()


@pytest.mark.parametrize("pt", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("kind", ["ddim", "dpm"])
@pytest.mark.parametrize("schedule,zsnr", [("linear", False), ("squaredcos_cap_v2", False),
                                           ("scaled_linear", True)])
def test_oracle_sampling_recovers_x0(pt, kind, schedule, zsnr):
    if zsnr and pt == "epsilon":
        with pytest.raises(NeuroditError, match="v_prediction or sample"):
            DiffusionConfig(prediction_type=pt, beta_schedule=schedule, rescale_zero_terminal_snr=zsnr)
        return
    cfg = DiffusionConfig(prediction_type=pt, beta_schedule=schedule, rescale_zero_terminal_snr=zsnr)
    sched = make_noise_scheduler(cfg)
    x0 = torch.linspace(-1, 1, 64).view(1, 1, 8, 8)
    model = Oracle(x0, sched, pt)
    assert float(diffusion_loss(model, x0.repeat(4, 1, 1, 1), torch.zeros(4, dtype=torch.long), sched, cfg,
                                generator=torch.Generator().manual_seed(0)).detach()) < 1e-6
    out = guided_sample(model, make_sampler(kind, sched), torch.tensor([0, 1]), 2, (1, 8, 8), steps=10,
                        guidance=2.0, generator=torch.Generator().manual_seed(0))
    # the oracle ignores labels, so guidance changes nothing and every sample must land on x0
    assert torch.allclose(out, x0.expand(2, -1, -1, -1), atol=2e-3), float((out - x0).abs().max())


def test_min_snr_weight_changes_loss_not_sign():
    sched_cfg = DiffusionConfig(prediction_type="v_prediction", snr_gamma=5.0)
    sched = make_noise_scheduler(sched_cfg)
    net = torch.nn.Conv2d(1, 1, 1)
    model = lambda x, timestep, class_labels: type("O", (), {"sample": net(x)})()  # noqa: E731
    x0 = torch.rand(8, 1, 4, 4) * 2 - 1
    plain = diffusion_loss(model, x0, torch.zeros(8, dtype=torch.long), sched,
                           DiffusionConfig(prediction_type="v_prediction"), torch.Generator().manual_seed(1))
    weighted = diffusion_loss(model, x0, torch.zeros(8, dtype=torch.long), sched, sched_cfg,
                              torch.Generator().manual_seed(1))
    # v-prediction weight min(snr, 5)/(snr+1) <= 1 with equality nowhere above snr 5 -> smaller loss
    assert 0 < float(weighted.detach()) < float(plain.detach())


def test_snr_floor_keeps_high_noise_weight_for_x0():
    # x0-prediction, one sample at a time: with gamma 5 and floor 1 the weight is clamp(snr, 1, 5):
    # exactly the plain loss at high noise (snr < 1), 5x the plain loss at low noise (snr > 5).
    sched = make_noise_scheduler(DiffusionConfig(prediction_type="sample", beta_schedule="squaredcos_cap_v2"))
    net = torch.nn.Conv2d(1, 1, 1)
    model = lambda x, timestep, class_labels: type("O", (), {"sample": net(x)})()  # noqa: E731
    x0 = torch.rand(1, 1, 4, 4) * 2 - 1
    y = torch.zeros(1, dtype=torch.long)
    snr = (sched.alphas_cumprod / (1 - sched.alphas_cumprod))
    plain_cfg = DiffusionConfig(prediction_type="sample", beta_schedule="squaredcos_cap_v2")
    floor_cfg = DiffusionConfig(prediction_type="sample", beta_schedule="squaredcos_cap_v2", snr_gamma=5.0,
                                snr_floor=1.0)
    gamma_cfg = DiffusionConfig(prediction_type="sample", beta_schedule="squaredcos_cap_v2", snr_gamma=5.0)
    ratios, gamma_ratios = [], []
    for seed in range(40):
        losses = [float(diffusion_loss(model, x0, y, sched, c, torch.Generator().manual_seed(seed)).detach())
                  for c in (plain_cfg, floor_cfg, gamma_cfg)]
        ratios.append(losses[1] / losses[0])
        gamma_ratios.append(losses[2] / losses[0])
    ratios, gamma_ratios = np.array(ratios), np.array(gamma_ratios)
    assert np.all((ratios >= 1 - 1e-5) & (ratios <= 5 + 1e-4))  # weight clamp(snr, 1, 5)
    assert np.any(ratios > 1.5) and np.any(np.isclose(ratios, 1.0, atol=1e-5))  # both regimes drawn
    assert np.all(gamma_ratios <= ratios + 1e-6)  # without the floor, high-noise steps lose weight
    assert snr.min() < 1 < 5 < snr.max()
    with pytest.raises(NeuroditError, match="snr_floor"):
        DiffusionConfig(prediction_type="v_prediction", snr_gamma=5.0, snr_floor=1.0)
