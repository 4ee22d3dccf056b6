"""Memorization audit: copies of training volumes are flagged, fresh draws are not."""

from __future__ import annotations

import numpy as np
import pytest

from neurodit.data.mask import support_mask
from neurodit.metrics.memorization import correlation_matrix, memorization_audit


def test_correlation_matrix_is_pearson_in_mask(cohorts):
    a, b = cohorts["train"][:3], cohorts["heldout"][:4]
    mask = support_mask(a)
    r = correlation_matrix(a, b, mask)
    ref = np.corrcoef(np.concatenate([a[:, mask], b[:, mask]]))[:3, 3:]
    np.testing.assert_allclose(r, ref, atol=1e-10)


def test_copies_of_training_volumes_are_flagged(cohorts):
    train, heldout = cohorts["train"], cohorts["heldout"]
    rng = np.random.default_rng(0)
    # a "generator" that returns training volumes with a tiny bit of noise
    copies = train[rng.integers(0, len(train), 20)] + rng.normal(0, 1e-6, (20, *train.shape[1:]))
    copies = copies.astype(np.float32) * (train[0] > 0)
    mask = support_mask(train)
    res = memorization_audit(copies, train, heldout, mask)
    assert res["flagged"] and res["fraction_above"] >= 0.95
    assert res["binom_p"] < 1e-10
    assert res["n_duplicates"] >= 19
    assert res["syn_nn"]["mean"] > res["heldout_nn"]["max"]
    assert res["closest"][0]["r"] > 0.999


def test_fresh_draws_are_not_flagged(cohorts):
    train, heldout, fresh = cohorts["train"], cohorts["heldout"], cohorts["heldout2"]
    res = memorization_audit(fresh, train, heldout, support_mask(train))
    assert not res["flagged"]
    assert res["fraction_above"] <= 0.1
    assert res["n_duplicates"] == 0
    assert res["syn_nn"]["mean"] == pytest.approx(res["heldout_nn"]["mean"], abs=0.02)


def test_leave_one_out_without_training_set(cohorts):
    real = cohorts["heldout"]
    mask = support_mask(real)
    res = memorization_audit(real[:10].copy(), real, None, mask)  # synthetic = copies of real
    assert res["heldout"] == "leave_one_out_reference"
    assert res["flagged"] and res["fraction_above"] == 1.0
    assert res["heldout_nn"]["max"] < 0.999  # a subject is never its own neighbour
