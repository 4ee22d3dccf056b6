"""Kernel MMD: identical sets, spread vs mean changes, symmetry, MONAI's linear estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import MMDMetric

from neurodit.errors import NeuroditError
from neurodit.metrics.mmd import mmd_test, monai_linear_mmd, volume_features


def _sets(seed=0, n=40, d=300, spread_y=1.0, shift_y=0.0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 1, d)
    x = mu + 0.3 * rng.standard_normal((n, d))
    y = mu + shift_y + 0.3 * spread_y * rng.standard_normal((n, d))
    return x, y


def test_identical_sets_give_about_zero():
    x, _ = _sets()
    for kernel in ("linear", "rbf"):
        res = mmd_test(x, x.copy(), kernel, permutations=200)
        scale = mmd_test(x, x + 1.0, kernel, permutations=0)["mmd2"]  # a real difference, for scale
        assert abs(res["mmd2"]) < 0.05 * abs(scale)
        assert res["p_value"] > 0.5
    # unbiased estimator on X = Y: exactly 2 (mean off-diagonal k - 1) / m for the RBF kernel (k(x,x)=1)
    res = mmd_test(x, x.copy(), "rbf", permutations=0)
    assert -2.0 / len(x) <= res["mmd2"] <= 0.0


def test_double_spread_caught_by_rbf_not_by_linear():
    # 10 independent draws: the RBF test rejects every time; the linear one at about its 5 % level
    p_rbf, p_lin = [], []
    for seed in range(10):
        x, y = _sets(seed=seed, spread_y=2.0)
        rbf = mmd_test(x, y, "rbf", permutations=300, seed=0)
        p_rbf.append(rbf["p_value"])
        p_lin.append(mmd_test(x, y, "linear", permutations=300, seed=0)["p_value"])
        assert rbf["mmd2"] > 0.05 and rbf["bandwidth"] > 0
    assert max(p_rbf) < 0.01
    assert sum(p < 0.05 for p in p_lin) <= 2 and np.median(p_lin) > 0.2


def test_mean_shift_caught_by_both():
    x, y = _sets(seed=2, shift_y=0.1)
    assert mmd_test(x, y, "rbf", permutations=300)["p_value"] < 0.01
    assert mmd_test(x, y, "linear", permutations=300)["p_value"] < 0.01


def test_symmetry():
    x, y = _sets(seed=3, spread_y=1.5)
    y = y[:25]  # unequal sizes too
    for kernel in ("linear", "rbf"):
        a = mmd_test(x, y, kernel, permutations=200, seed=5)
        b = mmd_test(y, x, kernel, permutations=200, seed=5)
        assert a["mmd2"] == pytest.approx(b["mmd2"], rel=1e-9, abs=1e-12)
        assert abs(a["p_value"] - b["p_value"]) < 0.05


def test_linear_equals_monai_mmdmetric():
    x, y = _sets(seed=4, n=12, shift_y=0.05)
    ours = mmd_test(x, y, "linear", permutations=0)["mmd2"]
    monai = float(MMDMetric()(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]))
    assert ours == pytest.approx(monai, rel=1e-9)
    assert monai_linear_mmd(x, y) == pytest.approx(monai, rel=1e-9)


def test_too_few_samples_and_feature_mismatch():
    x, y = _sets()
    with pytest.raises(NeuroditError, match="at least 2"):
        mmd_test(x[:1], y)
    with pytest.raises(NeuroditError, match="feature sizes"):
        mmd_test(x, y[:, :10])


def test_volume_features_mask_and_encoder():
    vols = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    f = volume_features(vols, mask)
    assert f.shape == (2, 8) and f[1, 0] == vols[1, 1, 1, 1]
    enc = torch.nn.AdaptiveAvgPool3d(1)  # a fixed "encoder": (B, 1, D, H, W) -> (B, 1, 1, 1, 1)
    g = volume_features(vols, encoder=enc)
    np.testing.assert_allclose(g[:, 0], vols.reshape(2, -1).mean(1), rtol=1e-6)
