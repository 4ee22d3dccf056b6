"""3D MS-SSIM: agreement with pytorch_msssim and MONAI, identity, automatic settings, pair sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics.regression import compute_ms_ssim
from pytorch_msssim import ms_ssim as ref_ms_ssim

from neurodit.errors import NeuroditError
from neurodit.metrics.msssim import (
    STANDARD_WEIGHTS,
    MSSSIMSettings,
    bootstrap_ci,
    choose_settings,
    ms_ssim_3d,
    ms_ssim_pairs,
    pairwise_msssim,
    sample_pairs,
)


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.standard_normal((3, *shape))).astype(np.float32)  # values in (-1, 1): model range
    y = np.clip(x + 0.4 * rng.standard_normal(x.shape), -1, 1).astype(np.float32)
    return x, y


def test_agrees_with_pytorch_msssim_and_monai():
    # pytorch_msssim needs every side > 16 * (win - 1) and an odd window: 48^3 with win 3, 5 scales
    x, y = _pair((48, 48, 48))
    st = MSSSIMSettings(kernel_size=3, scales=5, kernel_sigma=1.5, weights=STANDARD_WEIGHTS, data_range=2.0)
    ours = ms_ssim_3d(x, y, st)
    ref = ref_ms_ssim(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None], data_range=2.0,
                      size_average=False, win_size=3, win_sigma=1.5).numpy().ravel()
    monai = ms_ssim_3d(x, y, st, backend="monai")
    assert ours.shape == (3,)
    assert 0.2 < ours.min() < ours.max() < 0.99  # a real, non-trivial similarity
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    np.testing.assert_allclose(ours, monai, atol=1e-4)


def test_auto_settings_on_32_cube_match_monai():
    st = choose_settings((32, 32, 32))
    assert (st.kernel_size, st.scales) == (3, 4)
    assert sum(st.weights) == pytest.approx(1.0)
    x, y = _pair((32, 32, 32), seed=1)
    ours = ms_ssim_3d(x, y, st)
    monai = compute_ms_ssim(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None], spatial_dims=3,
                            data_range=2.0, kernel_size=3, kernel_sigma=st.kernel_sigma,
                            weights=st.weights).numpy().ravel()
    np.testing.assert_allclose(ours, monai, atol=1e-4)


def test_pairs_with_cached_stats_equal_direct():
    rng = np.random.default_rng(3)
    vols = np.tanh(rng.standard_normal((6, 20, 20, 20))).astype(np.float32)
    st = choose_settings(vols.shape[1:])
    pairs = sample_pairs(6, None, 100)
    cached = ms_ssim_pairs(vols, None, pairs, st)
    direct = ms_ssim_pairs(vols, None, pairs, st, max_cached_voxels=0)  # forces the per-batch path
    np.testing.assert_allclose(cached, direct, atol=1e-6)
    assert len(cached) == 15


def test_identical_volumes_give_one():
    x, _ = _pair((32, 32, 32))
    st = choose_settings(x.shape[1:])
    np.testing.assert_allclose(ms_ssim_3d(x, x.copy(), st), 1.0, atol=1e-5)
    res = pairwise_msssim(x, x.copy(), st, max_pairs=100)
    diag = ms_ssim_3d(x, x, st)
    assert res["n_pairs"] == 9 and diag.min() == pytest.approx(1.0, abs=1e-5)


def test_choose_settings_reaches_monai_defaults_on_big_volumes():
    st = choose_settings((176, 176, 176))
    assert (st.kernel_size, st.scales, st.weights) == (11, 5, STANDARD_WEIGHTS)
    assert st.kernel_sigma == pytest.approx(1.5)


@pytest.mark.parametrize("shape,expected", [((96, 112, 96), (5, 5)), ((64, 64, 64), (3, 5)),
                                            ((32, 32, 16), (3, 3))])
def test_choose_settings_fits_monai(shape, expected):
    st = choose_settings(shape)
    assert (st.kernel_size, st.scales) == expected
    # MONAI's own size check must pass for the chosen settings on a tiny batch
    x = torch.zeros(1, 1, *shape)
    val = compute_ms_ssim(x, x, spatial_dims=3, data_range=2.0, kernel_size=st.kernel_size,
                          kernel_sigma=st.kernel_sigma, weights=st.weights)
    assert float(val) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shape", [(4, 4, 4), (32, 32, 5)])
def test_too_small_volume_is_a_clear_error(shape):
    with pytest.raises(NeuroditError, match="too small for MS-SSIM"):
        choose_settings(shape)
    st = choose_settings((32, 32, 32))
    with pytest.raises(NeuroditError, match="too small"):
        ms_ssim_3d(np.zeros((1, *shape)), np.zeros((1, *shape)), st)


def test_sample_pairs_seeded_unique_and_bounded():
    p1 = sample_pairs(100, None, 500, np.random.default_rng(7))
    p2 = sample_pairs(100, None, 500, np.random.default_rng(7))
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (500, 2) and (p1[:, 0] < p1[:, 1]).all()
    assert len({tuple(p) for p in p1}) == 500
    cross = sample_pairs(3, 4, 500)
    assert cross.shape == (12, 2) and cross[:, 0].max() == 2 and cross[:, 1].max() == 3


def test_bootstrap_ci_brackets_mean_and_shrinks():
    rng = np.random.default_rng(0)
    small, big = rng.normal(0.8, 0.05, 30), rng.normal(0.8, 0.05, 3000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(big)
    assert (hi2 - lo2) < (hi - lo) / 5


def test_msssim_pairs_are_budgeted_in_voxels():
    """Up to 64^3 voxels a volume every group gets max_pairs; a 2 mm volume (34x the voxels of 32^3) fewer,
    in proportion, never under 100 (or max_pairs where that is fewer)."""
    from neurodit.metrics.families import pairs_for

    assert pairs_for((32, 32, 32), 500) == 500 and pairs_for((64, 64, 64), 300) == 300
    assert pairs_for((99, 117, 95), 500) == 119 and pairs_for((80, 80, 80), 500) == 256
    assert pairs_for((182, 218, 182), 500) == 100  # 1 mm: the floor
    assert pairs_for((99, 117, 95), 60) == 60


def test_a_disk_set_is_converted_to_model_range_once_and_equals_the_lazy_view(tmp_path):
    """``model_range_on_disk``: the same floats as ``ModelRange`` read volume by volume, in a scratch file
    removed with the set."""
    import gc

    from neurodit.data.normalize import Normalization
    from neurodit.metrics.volumes import DiskVolumes, ModelRange, model_range_on_disk

    rng = np.random.default_rng(0)
    vols = (rng.random((5, 6, 7, 8)) * 3e-3).astype(np.float32)
    np.save(tmp_path / "v.npy", vols)
    disk = DiskVolumes(tmp_path / "v.npy")
    conv = model_range_on_disk(disk, Normalization())
    np.testing.assert_array_equal(conv[:], ModelRange(disk, Normalization())[:])
    assert conv.shape == vols.shape and conv[2].shape == (6, 7, 8)
    scratch = conv.path.parent
    del conv
    gc.collect()
    assert not scratch.exists()
