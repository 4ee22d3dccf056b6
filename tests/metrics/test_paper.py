"""Paper protocol: [0, 1] scaling, 64^3, MONAI MS-SSIM kernel 2, per-pair mean squared difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics.regression import compute_ms_ssim

from neurodit.metrics.msssim import ms_ssim_3d
from neurodit.metrics.paper import PAPER_SETTINGS, pair_msd, paper_protocol, to_paper_space


def test_to_paper_space_range_and_shape(cohorts):
    v = to_paper_space(cohorts["train"][:3])
    assert v.shape == (3, 64, 64, 64) and v.dtype == np.float32
    assert v.min() == 0.0 and 0.9 < v.max() <= 1.0
    # background stays 0, the brain keeps its relative contrast (ventricle brightest)
    assert v[:, 0, 0, 0].max() == 0.0 and v[:, 32, 32, 32].min() > 0.6


def test_paper_msssim_matches_monai_kernel_2():
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 64)).astype(np.float32)
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    ours = ms_ssim_3d(x, y, PAPER_SETTINGS)
    monai = compute_ms_ssim(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None], spatial_dims=3,
                            data_range=1.0, kernel_size=2).numpy().ravel()
    np.testing.assert_allclose(ours, monai, atol=1e-4)
    np.testing.assert_allclose(ms_ssim_3d(x, x, PAPER_SETTINGS), 1.0, atol=1e-5)


def test_pair_msd_is_mean_squared_difference():
    a = np.zeros((2, 4, 4, 4))
    b = np.ones((2, 4, 4, 4)) * np.array([0.5, 2.0]).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(pair_msd(a, b), [0.25, 4.0])
    assert pair_msd(a, a).tolist() == [0.0, 0.0]


def test_paper_protocol_groups(cohorts):
    real, syn = cohorts["heldout"][:6], cohorts["heldout2"][:6]
    res = paper_protocol(real, real.copy(), max_pairs=20, n_boot=100)
    # identical sets: the real-real and real-"syn" groups have the same kind of pairs, syn-syn == real-real
    assert res["msssim"]["syn_syn"]["mean"] == pytest.approx(res["msssim"]["real_real"]["mean"], abs=1e-9)
    assert res["msssim"]["real_syn"]["n_pairs"] == 20 and res["msssim"]["real_real"]["n_pairs"] == 15
    res2 = paper_protocol(real, syn, max_pairs=20, n_boot=100)
    for grp in ("real_real", "real_syn", "syn_syn"):
        assert 0.5 < res2["msssim"][grp]["mean"] < 1.0
        assert res2["mmd_pairwise_msd"][grp]["mean"] > 0  # distinct subjects differ: it is not a 2-sample test
        lo, hi = res2["msssim"][grp]["ci95"]
        assert lo <= res2["msssim"][grp]["mean"] <= hi
    assert res2["settings"]["kernel_size"] == 2 and res2["settings"]["shape"] == [64, 64, 64]
