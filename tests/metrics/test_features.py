"""Feature-space metrics: Fréchet distance and PRDC on known cases and the ranking of simple generators
on a phantom (the encoder itself: tests/metrics/test_encoder.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from neurodit.errors import NeuroditError
from neurodit.metrics.encoder import FEATURE_VIEW, train_encoder
from neurodit.metrics.features import SD_FLOOR, Standardizer, feature_metrics, frechet_distance, prdc
from neurodit.metrics.texture import TEXTURE_STATS


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
    # PCA samples are near the real training set's distance (a blend of subjects is a little smoother, which
    # the texture block sees: 2.4x on this phantom), the mean image and noise far beyond it
    assert pca["frechet_ratio"] < 3 < min(mean["frechet_ratio"], noise["frechet_ratio"])


def test_noise_is_not_precise_in_the_feature_view(ranked):
    """Class mean + white voxel noise: the texture block puts it outside the real cloud (the pooled encoder
    features alone had kept its precision near 1), while PCA samples stay inside."""
    noise, pca = ranked["noise"], ranked["pca"]
    assert noise["precision"] < 0.5 < pca["precision"]
    assert noise["texture"]["highpass_lag1"]["syn_z"] < -3  # the residual's correlation is gone
    assert noise["by_block"]["texture"]["frechet_ratio"] > 10 * pca["by_block"]["texture"]["frechet_ratio"]
    # the floor is sane: the real training set lies in the held-out cloud
    assert pca["floor"]["precision"] >= 0.8 and pca["floor"]["recall"] >= 0.8


def test_standardizer_gives_each_block_unit_total_variance():
    rng = np.random.default_rng(0)
    blocks = {"encoder": rng.normal(5, [1, 10, 100, 0.1], (200, 4)), "texture": rng.normal(0, 3, (200, 2))}
    std = Standardizer.fit(blocks)
    z = std(blocks)  # (200, 6)
    np.testing.assert_allclose(z[:, :4].var(0, ddof=1).sum(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(z[:, 4:].var(0, ddof=1).sum(), 1.0, rtol=1e-9)
    # an almost constant feature is floored at SD_FLOOR x its block's median sd
    blocks["encoder"][:, 3] = 5.0 + 1e-12 * rng.standard_normal(200)
    std = Standardizer.fit(blocks)
    sd = blocks["encoder"].std(0, ddof=1)  # the 4th about 1e-12
    assert std.scale[3] == pytest.approx(SD_FLOOR * np.median(sd) * np.sqrt(4), rel=1e-9)


def test_same_frechet_with_the_cache_cleared(tmp_path):
    """Two evaluations, the encoder cache deleted in between: the same Fréchet distance to 1e-6; without a
    reference set the figure is raw and the verdict says so."""
    import shutil

    from neurodit.metrics.encoder import get_encoder

    from .conftest import brain_volumes

    train, real, syn = (brain_volumes(12, shape=(16, 16, 16), seed=s) for s in (1, 2, 3))
    mask = train[0] > 1e-4
    out = []
    for _ in range(2):
        enc = get_encoder(train, None, mask, tmp_path / "cache", epochs=2, dim=8)
        assert enc.info["cached"] is False
        out.append(feature_metrics(real, syn, enc, k=3, reference_mm2s=train))
        shutil.rmtree(tmp_path / "cache")
    assert out[0]["frechet"] == pytest.approx(out[1]["frechet"], abs=1e-6)
    assert out[0]["floor"]["frechet"] == pytest.approx(out[1]["floor"]["frechet"], abs=1e-6)
    raw = feature_metrics(real, syn, enc, k=3)
    assert raw["floor"] is None and raw["frechet_ratio"] is None
    assert raw["view"]["standardized_on"] == "real (12 volumes)"
    assert "raw feature units: no real-vs-real floor" in raw["verdict"]


def test_feature_metrics_report(ranked):
    m = ranked["pca"]
    assert set(m) >= {"encoder", "dim", "n_real", "n_synthetic", "frechet", "precision", "recall", "density",
                      "coverage", "warnings", "verdict", "floor"}
    # the feature view: 32 encoder features + 7 texture statistics
    assert m["view"]["blocks"] == {"encoder": 32, "texture": len(TEXTURE_STATS)} and m["dim"] == 39
    assert m["view"]["version"] == FEATURE_VIEW and m["view"]["standardized_on"] == "reference (36 volumes)"
    assert m["n_real"] == 36 and m["n_synthetic"] == 30 and m["encoder"]["kind"] == "own"
    # 30 synthetic and 36 real volumes for 39 features: both warned
    assert [w.split(":")[0] for w in m["warnings"]] == ["only 36 real volumes for 39 features",
                                                        "only 30 synthetic volumes for 39 features"]
    assert m["frechet_ratio"] == pytest.approx(m["frechet"] / m["floor"]["frechet"], rel=1e-12)
    assert set(m["by_block"]) == {"encoder", "texture"} and set(m["texture"]) == set(TEXTURE_STATS)
    assert f"{m['frechet_ratio']:.1f}x that between two real sets" in m["verdict"]
    assert "cover" in m["verdict"] and m["verdict"].endswith(".")
    # the mean image: no variety, and too smooth to look real to the texture block
    assert "cover 0% of the real variety" in ranked["mean"]["verdict"]
    assert "much of the real variety is missing" in ranked["mean"]["verdict"]
    json.dumps(m)  # JSON-ready
