"""Texture statistics of the feature view: white noise vs smooth tissue, masks, streaming, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neurodit.errors import NeuroditError
from neurodit.metrics.texture import TEXTURE_STATS, texture_statistics

from .conftest import brain_volumes


def _col(name: str) -> int:
    return TEXTURE_STATS.index(name)


def test_white_noise_differs_from_smooth_tissue():
    smooth = brain_volumes(6, shape=(20, 20, 20), seed=0)
    mask = (smooth > 1e-4).mean(0) >= 0.5
    rng = np.random.default_rng(0)
    # the same brains with independent voxel noise twice the sd of the subjects' smooth field
    noisy = np.where(mask, np.clip(smooth + rng.normal(0, 0.3e-3, smooth.shape), 1e-5, None), 0).astype(np.float32)
    s, n = texture_statistics(smooth, mask), texture_statistics(noisy, mask)
    assert s.shape == (6, len(TEXTURE_STATS)) and s.dtype == np.float64
    # smooth fields and tissue edges: a correlated high-pass residual (about 0.27 here); noise lowers it
    assert s[:, _col("highpass_lag1")].min() > 0.2
    assert (n[:, _col("highpass_lag1")] < s[:, _col("highpass_lag1")] - 0.05).all()
    # the finest Laplacian grows far more than the coarse one: the energy sits at the voxel scale
    fine = n[:, _col("laplacian1")].mean() / s[:, _col("laplacian1")].mean()
    coarse = n[:, _col("laplacian2")].mean() / s[:, _col("laplacian2")].mean()
    assert fine > 2.0 and fine > 1.5 * coarse
    assert (n[:, _col("local_sd_mean")] > s[:, _col("local_sd_mean")]).all()


def test_pure_noise_lag1_is_negative_and_the_outline_is_ignored():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[3:17, 3:17, 3:17] = True
    vols = np.where(mask, 1e-3 + rng.normal(0, 1e-4, (4, 20, 20, 20)), 0).astype(np.float32)
    t = texture_statistics(vols, mask)
    # residual of white noise after a 3x3x3 box mean: lag-1 covariance (-2/27 + 18/729) sigma^2 over the
    # variance 26/27 sigma^2, i.e. -0.051
    np.testing.assert_allclose(t[:, _col("highpass_lag1")].mean(), -0.051, atol=0.025)
    # the brain's outline (1e-3 -> 0) never enters: a constant brain has zero texture
    flat = np.where(mask, 1e-3, 0).astype(np.float32)[None].repeat(2, 0)
    np.testing.assert_allclose(texture_statistics(flat, mask)[:, :6], 0.0, atol=1e-7)


def test_streaming_and_bad_input():
    vols = brain_volumes(5, shape=(16, 16, 16), seed=2)
    mask = vols[0] > 1e-4
    np.testing.assert_allclose(texture_statistics(vols, mask, batch_size=2), texture_statistics(vols, mask),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(NeuroditError, match="mask shape"):
        texture_statistics(vols, mask[:-1])
    with pytest.raises(NeuroditError, match="eroded by 2"):
        texture_statistics(vols, np.pad(np.ones((6, 6, 6), bool), 5))
    with pytest.raises(NeuroditError, match=r"\(N, D, H, W\)"):
        texture_statistics(vols[0], mask)
