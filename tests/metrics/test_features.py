"""Feature-space metrics: Fréchet distance and PRDC on known cases and the ranking of simple generators
on a phantom (the encoder itself: tests/metrics/test_encoder.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from neurodit.errors import NeuroditError
from neurodit.metrics.encoder import train_encoder
from neurodit.metrics.features import feature_metrics, frechet_distance, prdc


def _gauss(n, f=8, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((f, f)) / np.sqrt(f)  # correlated features
    return rng.standard_normal((n, f)) @ mix * scale + shift


# --------------------------------------------------------------------------- Fréchet distance
def test_frechet_of_a_set_to_itself_is_zero():
    for n, f in ((200, 8), (10, 32)):  # full rank, and N < F (singular covariance)
        x = _gauss(n, f)
        assert abs(frechet_distance(x, x)) <= 1e-6
        assert abs(frechet_distance(x, x.copy())) <= 1e-6


def test_frechet_matches_the_sqrtm_formula_and_grows_with_shift():
    a, b = _gauss(300, 8, seed=1), _gauss(250, 8, seed=2, scale=1.3)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    # a pure shift c in every one of F features adds c^2 F exactly (same covariance)
    d = [frechet_distance(a, a + c) for c in (0.0, 0.1, 0.5, 1.0)]
    assert d[0] <= 1e-6 and 0 < d[1] < d[2] < d[3]
    assert d[3] == pytest.approx(8.0, rel=1e-9)


# --------------------------------------------------------------------------- PRDC
def test_prdc_identical_sets_and_narrower_copy():
    x = _gauss(120, 6, seed=3)
    same = prdc(x, x.copy(), k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] >= 1.0  # each point sits in its own ball and in those of >= k neighbours
    # a copy shrunk towards the mean: still realistic (precision high), covers less (recall lower)
    narrow = prdc(x, (x - x.mean(0)) * 0.3 + x.mean(0), k=5)
    assert narrow["precision"] > 0.9
    assert narrow["recall"] < 0.5 < same["recall"]
    # zero diversity: every fake the same point -> recall 0
    mean = prdc(x, np.repeat(x.mean(0, keepdims=True), 40, axis=0), k=5)
    assert mean["recall"] == 0.0 and mean["precision"] == 1.0
    # far away fakes: nothing realistic, nothing covered
    far = prdc(x, x + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_rejects_k_too_large():
    with pytest.raises(NeuroditError, match="k"):
        prdc(_gauss(5, 3), _gauss(20, 3), k=5)


# --------------------------------------------------------------------------- feature_metrics on a phantom
@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """A 72-subject camcan phantom at 6 mm: the own encoder trained on 36 training subjects; 36 held out.
    Simple generators made from the training set, per sex: PCA-Gaussian (all components), class mean +
    independent voxel noise with the per-voxel sd, and the class mean (zero diversity)."""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.phantom import make_phantom_cohort

    torch.set_num_threads(1)
    folder = make_phantom_cohort("camcan", 72, tmp_path_factory.mktemp("feat") / "c", seed=1, voxel_size=6.0)
    cohort = read_cohort(folder)
    vols, _ = load_volumes(cohort)
    train, held = vols[:36], vols[36:]
    sex = cohort.table["sex"].to_numpy()[:36]
    mask = (vols > 1e-4).mean(0) >= 0.5
    enc = train_encoder(train, cohort.table.iloc[:36], mask, tmp_path_factory.mktemp("feat") / "enc", seed=0)
    rng = np.random.default_rng(0)
    gens = {"pca": [], "noise": [], "mean": []}
    for i in range(30):
        x = train[sex == "FM"[i % 2]]
        mu, flat = x.mean(0), x.reshape(len(x), -1)
        z = rng.standard_normal(len(x)) / np.sqrt(len(x) - 1)
        gens["pca"].append(mu + (z @ (flat - flat.mean(0))).reshape(mu.shape))
        gens["noise"].append(mu + rng.standard_normal(mu.shape) * x.std(0))
        gens["mean"].append(mu)
    gens = {k: np.clip(np.stack(v), 0, None) for k, v in gens.items()}
    return {k: feature_metrics(held, v, enc, reference_mm2s=train) for k, v in gens.items()}


def test_feature_metrics_rank_pca_above_noise_and_mean(ranked):
    pca, noise, mean = ranked["pca"], ranked["noise"], ranked["mean"]
    assert pca["frechet"] < noise["frechet"] and pca["frechet"] < mean["frechet"]
    assert pca["recall"] > noise["recall"] and pca["recall"] > mean["recall"]
    assert mean["recall"] == 0.0  # zero diversity
    assert pca["recall"] >= 0.8
    # PCA samples are about as far from the held-out set as the real training set is
    assert pca["frechet"] < 2 * pca["floor"]["frechet"] < mean["frechet"]


def test_feature_metrics_report(ranked):
    m = ranked["pca"]
    assert set(m) >= {"encoder", "dim", "n_real", "n_synthetic", "frechet", "precision", "recall", "density",
                      "coverage", "warnings", "verdict", "floor"}
    assert m["dim"] == 32 and m["n_real"] == 36 and m["n_synthetic"] == 30 and m["encoder"]["kind"] == "own"
    # 30 synthetic volumes for 32 features: warned; 36 real: not
    assert [w for w in m["warnings"] if "volumes for 32 features" in w] == [
        w for w in m["warnings"] if w.startswith("only 30 synthetic volumes for 32 features")]
    assert len(m["warnings"]) == 1
    assert "cover" in m["verdict"] and m["verdict"].endswith(".")
    assert "0% of the real variety" in ranked["mean"]["verdict"] and "too little variety" in ranked["mean"]["verdict"]
    json.dumps(m)  # JSON-ready
