"""The shared small 3D CNN: the shapes its three users need (classifier, C2ST logit, encoder features)."""

from __future__ import annotations

import pytest
import torch

from neurodit.models.small_cnn import MIN_SIDE, SmallCNN, input_pool


@pytest.mark.parametrize(("use", "kwargs", "n_outputs", "width", "n_params"), [
    ("downstream classifier", {"n_outputs": 2}, 2, 96, 239_095),
    ("C2ST CNN view", {"n_outputs": 1}, 1, 96, 238_998),
    # the encoder: 3 + 2 * 4^3 training targets on 16 features (EncoderTraining with dim=16)
    ("encoder", {"n_outputs": 131, "channels": (8, 16, 32, 64), "last": 16}, 131, 16, 102_808),
])
def test_configurable_head_and_width(use, kwargs, n_outputs, width, n_params):
    torch.manual_seed(0)
    net = SmallCNN(**kwargs).eval()
    x = torch.randn(3, 1, 16, 20, 24)  # any grid with every side >= MIN_SIDE
    with torch.no_grad():
        out, feats = net(x), net.embed(x)
    assert out.shape == (3, n_outputs), use
    assert feats.shape == (3, width), use
    assert sum(p.numel() for p in net.parameters()) == n_params, use
    # forward is the head on the pooled features: one computation, two views
    torch.testing.assert_close(net.head(feats), out, rtol=0, atol=0)


def test_narrower_stages_and_smallest_grid():
    net = SmallCNN(channels=(4, 8), last=12, n_outputs=3)
    assert [type(m).__name__ for m in net.features] == ["Convolution"] * 3  # two stride-2 blocks + the last
    assert net(torch.zeros(2, 1, 8, 8, 8)).shape == (2, 3)
    assert SmallCNN()(torch.zeros(1, 1, MIN_SIDE, MIN_SIDE, MIN_SIDE)).shape == (1, 2)


def test_large_volumes_are_pooled_to_the_working_grid():
    assert input_pool((32, 32, 32)) == 1 and input_pool((48, 48, 48)) == 1 and input_pool((64, 64, 64)) == 2
    assert input_pool((99, 117, 95)) == 3 and input_pool((182, 218, 182)) == 5  # 2 mm, 1 mm MNI
    torch.manual_seed(0)
    pooled = SmallCNN(n_outputs=1, in_pool=2)
    x = torch.randn(2, 1, 34, 36, 33)
    # the pooled network is the plain one on the 2x average-pooled input (ceil mode: odd sides keep their edge)
    plain = SmallCNN(n_outputs=1)
    plain.load_state_dict(pooled.state_dict())  # the same keys: the pool has no parameters
    ref = plain(torch.nn.functional.avg_pool3d(x, 2, ceil_mode=True))
    torch.testing.assert_close(pooled(x), ref, rtol=1e-5, atol=1e-6)
    assert len(list(pooled.parameters())) == len(list(plain.parameters()))

