"""C2ST: matched real sets pass, white noise is rejected, a copy of the training set fools it, and the
dual logistic regression equals scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest

from neurodit.data.mask import support_mask
from neurodit.errors import NeuroditError
from neurodit.generators import fit_reference
from neurodit.metrics.c2st import c2st, c2st_report, c2st_verdict, logistic_fit, view_features


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict:
    """A 60-subject camcan phantom at 8 mm (25x30x24), split by participant at random, stratified by
    sex, 30 train / 30 held-out.

    (Not first half / second half: those two halves of a phantom cohort score a C2ST AUC of ~0.27 for every
    fold seed, i.e. they are more alike than two random halves, which the test must not depend on.)"""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.phantom import make_phantom_cohort

    folder = make_phantom_cohort("camcan", 60, tmp_path_factory.mktemp("c2st") / "ph", seed=0, voxel_size=8.0)
    cohort = read_cohort(folder)
    vols, _ = load_volumes(cohort)
    # stratified by sex (15 F + 15 M each side): a CNN tells a 12 F / 18 M set from an 18 F / 12 M one
    # (head size differs by sex), which is a real difference between the sets, not a C2ST false positive
    rng = np.random.default_rng(0)
    by_sex = [rng.permutation(np.flatnonzero(cohort.table["sex"] == s)) for s in ("F", "M")]
    order = np.r_[by_sex[0][:15], by_sex[1][:15], by_sex[0][15:30], by_sex[1][15:30]]
    vols = vols[order]
    sex = [str(cohort.table["sex"].iloc[i]) for i in order]
    train, heldout = vols[:30], vols[30:]
    return {"train": train, "heldout": heldout, "sex": sex[:30], "sex_heldout": sex[30:], "mask": support_mask(train, heldout),
            "gen_mask": support_mask(train, min_fraction=1e-6)}


def _like_train(split, kind: str) -> np.ndarray:
    """``kind`` samples with the training set's class counts (a copy is then the training set, reordered)."""
    model = fit_reference(split["train"], split["sex"], split["gen_mask"], kind)
    return np.concatenate([model.sample(split["sex"].count(c), label=c, seed=1)[0] for c in ("F", "M")])


def test_heldout_real_is_indistinguishable_from_train(split):
    rep = c2st_report(split["train"], split["heldout"], split["mask"], views=("voxel", "texture", "cnn"),
                      permutations=100, bootstrap=500, cnn_epochs=6, real_strata=split["sex"],
                      syn_strata=split["sex_heldout"])
    for view, r in rep["views"].items():
        assert r["p_value"] > 0.05, (view, r)
        if view != "cnn":  # the CNN's Mann-Whitney interval ignores how much its fold models vary
            assert r["auc_ci95"][0] < 0.5 < r["auc_ci95"][1], (view, r)
        assert r["n_real"] == r["n_synthetic"] == 30 and r["folds"] == 5
    assert rep["views"]["voxel"]["permutations"] == 100 and rep["views"]["cnn"]["permutations"] == 0
    assert "could not tell them apart" in rep["verdict"]


def test_noise_is_rejected_by_texture_and_a_copy_fools_every_linear_view(split):
    noise = c2st(split["heldout"], _like_train(split, "noise"), split["mask"], "texture", permutations=100)
    assert noise["auc"] > 0.9 and noise["p_value"] < 0.02
    assert "easy to tell apart" in noise["verdict"] and "texture" in noise["verdict"]
    copy = _like_train(split, "copy")
    for view in ("voxel", "texture"):
        r = c2st(split["heldout"], copy, split["mask"], view, permutations=100)
        # not told apart: p > 0.05 and AUC not above chance (matched sets can anti-learn below 0.5, see
        # neurodit.metrics.c2st; the one-sided permutation p is the judge)
        assert r["auc"] < 0.65 and r["p_value"] > 0.05, (view, r)


def test_balancing_and_bad_input(split):
    r = c2st(split["heldout"][:10], split["train"], split["mask"], "voxel", permutations=20, bootstrap=100)
    assert r["n_real"] == r["n_synthetic"] == 10  # the larger side is subsampled
    with pytest.raises(NeuroditError, match="unknown C2ST view"):
        c2st(split["heldout"], split["train"], split["mask"], "fft")
    with pytest.raises(NeuroditError, match="one grid"):
        c2st(split["heldout"], split["train"][:, :-1], split["mask"], "voxel")
    with pytest.raises(NeuroditError, match=">= 2 volumes"):
        c2st(split["heldout"][:1], split["train"], split["mask"], "voxel")
    f = view_features(split["heldout"][:3], split["mask"], "texture")
    assert f.shape == (3, 3 * int(split["mask"].sum())) and np.isfinite(f).all()


def test_logistic_fit_matches_sklearn_and_verdict_words():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 12))
    y = (z[:, 0] + rng.standard_normal(40) > 0).astype(int)
    for c in (0.1, 1.0, 30.0):
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(z, y)
        th = logistic_fit(z, y[None], c)[0]
        assert np.allclose(z @ th[:-1] + th[-1], ref.decision_function(z), atol=1e-5)
    assert c2st_verdict("voxel", 0.99, 0.005) == ("a linear classifier on the voxel values tells synthetic from "
                                                 "real with AUC 0.99 (p < 0.01): easy to tell apart")
    assert c2st_verdict("cnn", 0.52, 0.41).endswith("(AUC 0.52, p 0.41): could not tell them apart")


def test_batched_fold_auc_is_the_per_row_fold_auc_exactly():
    """The bootstrap CI and the permutation null score all resamples at once: the same floats as one
    ``_fold_auc`` per row, ties included (shared labels, and one label vector per row)."""
    from neurodit.metrics.c2st import _fold_auc, _fold_auc_batch, _folds, _permute_within_folds

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(11, int), np.ones(12, int)]
    fold_of = _folds(y, 4, seed=0)
    scores = np.round(rng.normal(size=(9, 23)), 1)  # rounded: many ties
    want = [_fold_auc(s, y, fold_of) for s in scores]
    assert np.array_equal(_fold_auc_batch(scores, y, fold_of), want)
    yp = np.array([_permute_within_folds(y, fold_of, rng) for _ in range(9)])
    assert np.array_equal(_fold_auc_batch(scores, yp, fold_of),
                          [_fold_auc(s, t, fold_of) for s, t in zip(scores, yp, strict=True)])
    assert 0.0 <= min(want) and max(want) <= 1.0 and len(set(want)) > 3
