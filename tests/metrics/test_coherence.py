"""Through-plane coherence: a slice-by-slice generator is caught, real held-out data is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics.regression import compute_ssim_and_cs

from neurodit.data.mask import support_mask
from neurodit.data.normalize import Normalization
from neurodit.metrics.coherence import (
    coherence_report,
    gradient_anisotropy,
    plane_ssim,
    slice_correlation_profile,
)


def _slice_shuffler(pool: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A 'generator' that draws each axial slice (axis 2) independently: slice k from a random subject."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, *pool.shape[1:]), dtype=pool.dtype)
    for k in range(pool.shape[3]):
        out[:, :, :, k] = pool[rng.integers(0, len(pool), n), :, :, k]
    return out


def test_plane_ssim_matches_monai_2d():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(np.tanh(rng.standard_normal((2, 12, 16, 20))).astype(np.float32))
    b = torch.clamp(a + 0.3 * torch.from_numpy(rng.standard_normal(a.shape).astype(np.float32)), -1, 1)
    ours = plane_ssim(a, b, np.array([0, 1]), np.array([1, 0]), axis=0)  # sagittal: planes (16, 20)
    assert ours.shape == (2, 12)
    k = 7
    for p, (i, j) in enumerate(((0, 1), (1, 0))):
        s, _ = compute_ssim_and_cs(a[i][:, None], b[j][:, None], spatial_dims=2, kernel_size=(k, k),
                                   kernel_sigma=(1.5 * k / 11,) * 2, data_range=2.0)
        np.testing.assert_allclose(ours[p].numpy(), s.flatten(1).mean(1).numpy(), atol=1e-5)


def test_slice_profile_and_anisotropy_on_known_volumes():
    vol = np.repeat(np.linspace(0, 1, 64).reshape(1, 8, 8, 1), 6, axis=3)  # identical axial slices
    vol = vol + np.arange(6).reshape(1, 1, 1, 6) * 0.01  # plus an offset: r stays exactly 1
    mask = np.ones((8, 8, 6), bool)
    np.testing.assert_allclose(slice_correlation_profile(vol, mask), 1.0, atol=1e-12)
    assert gradient_anisotropy(vol, mask)[0] < 0.02  # barely changes along the tiled axis


def test_slice_shuffling_generator_scores_worse_than_real_heldout(cohorts):
    norm = Normalization()
    train, heldout, fresh = cohorts["train"], cohorts["heldout"], cohorts["heldout2"]
    shuffled = _slice_shuffler(train, len(fresh))
    mask = support_mask(heldout)
    real_m = norm.to_model(heldout)
    honest = coherence_report(real_m, norm.to_model(fresh), mask, max_pairs=40)
    bad = coherence_report(real_m, norm.to_model(shuffled), mask, max_pairs=40)
    # slice-to-slice correlation along the tiled axis drops, anisotropy rises
    assert bad["slice_corr"]["syn_mean"] < honest["slice_corr"]["syn_mean"] - 0.02
    assert honest["slice_corr"]["mean_abs_profile_diff"] < bad["slice_corr"]["mean_abs_profile_diff"]
    assert bad["anisotropy"]["ratio_syn_over_real"] > 1.2
    assert honest["anisotropy"]["ratio_syn_over_real"] == pytest.approx(1.0, abs=0.1)
    # the axial planes are real slices, so the 2D SSIM drop shows only in sagittal/coronal reformats
    assert bad["through_plane_excess_drop"] > 0.005
    assert abs(honest["through_plane_excess_drop"]) < bad["through_plane_excess_drop"] / 3
    for plane in ("sagittal", "coronal"):
        assert bad["ssim_2d"][plane]["real_syn"] < honest["ssim_2d"][plane]["real_syn"]


def test_slice_shuffling_caught_on_phantom_cohort(phantom):
    norm = Normalization()
    heldout = norm.to_model(phantom["heldout"])
    mask = support_mask(phantom["heldout"])
    honest = coherence_report(heldout, norm.to_model(phantom["fresh"]), mask, max_pairs=30)
    bad = coherence_report(heldout, norm.to_model(_slice_shuffler(phantom["train"], 12)), mask, max_pairs=30)
    assert bad["slice_corr"]["syn_mean"] < honest["slice_corr"]["syn_mean"] - 0.1
    assert bad["anisotropy"]["ratio_syn_over_real"] > 1.3 > 1.1 > honest["anisotropy"]["ratio_syn_over_real"]
    assert bad["through_plane_excess_drop"] > 0.01 > honest["through_plane_excess_drop"]
