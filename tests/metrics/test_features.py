"""Feature-space metrics: Fréchet distance and PRDC on known cases, the own encoder (train, save, load,
cache), user encoders (TorchScript, safetensors + JSON, refused pickles) and the ranking of simple
generators on a phantom."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from neurodit.errors import NeuroditError
from neurodit.metrics import features as ft
from neurodit.metrics.features import (
    Encoder,
    feature_metrics,
    frechet_distance,
    get_encoder,
    load_encoder,
    prdc,
    train_encoder,
)

from .conftest import brain_volumes


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


# --------------------------------------------------------------------------- own encoder
@pytest.fixture(scope="module")
def small_train():
    vols = brain_volumes(10, shape=(16, 16, 16), seed=4)
    import pandas as pd

    table = pd.DataFrame({"sex": ["F", "M"] * 5, "age": np.linspace(20, 80, 10)})
    return vols, table, vols[0] > 1e-4


def test_encoder_save_load_round_trip(tmp_path, small_train):
    vols, table, mask = small_train
    enc = train_encoder(vols, table, mask, tmp_path / "enc", epochs=2, dim=16)
    assert {p.name for p in (tmp_path / "enc").iterdir()} == {"encoder.safetensors", "encoder.json", "run.json"}
    conf = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert conf["trained_on"]["sha256"] == ft.training_data_hash(vols, table, mask)
    assert conf["trained_on"]["objective"] == ["pooled input and gradient reconstruction", "sex", "age"]
    assert conf["weights_sha256"] == ft._sha256_file(tmp_path / "enc" / "encoder.safetensors")
    assert enc.info["kind"] == "own" and enc.info["dim"] == 16 and enc.info["sha256"] == conf["weights_sha256"]
    f1 = enc.features(vols, batch_size=3)
    assert f1.shape == (10, 16) and f1.dtype == np.float64 and np.all(np.isfinite(f1))
    assert f1.std(0).max() > 0  # not a constant map
    for path in (tmp_path / "enc", tmp_path / "enc" / "encoder.json", tmp_path / "enc" / "encoder.safetensors"):
        again = load_encoder(path)
        np.testing.assert_array_equal(again.features(vols, batch_size=3), f1)
        # another batch size: the same up to float32 rounding of the convolutions
        np.testing.assert_allclose(again.features(vols, batch_size=4), f1, rtol=1e-4, atol=1e-6)
        assert again.info["sha256"] == enc.info["sha256"]
    # no labels at all: the self-supervised objective alone
    unl = train_encoder(vols, None, None, tmp_path / "unl", epochs=1, dim=16)
    assert unl.info["trained_on"]["objective"] == ["pooled input and gradient reconstruction"]
    with pytest.raises(NeuroditError, match="not empty"):
        train_encoder(vols, None, None, tmp_path / "unl", epochs=1, dim=16)


def test_tampered_weights_are_refused(tmp_path, small_train):
    vols, table, mask = small_train
    train_encoder(vols, table, mask, tmp_path / "enc", epochs=1, dim=16)
    conf_path = tmp_path / "enc" / "encoder.json"
    conf = json.loads(conf_path.read_text())
    conf["weights_sha256"] = "0" * 64
    conf_path.write_text(json.dumps(conf))
    with pytest.raises(NeuroditError, match="encoder.safetensors.*sha256"):
        load_encoder(tmp_path / "enc")


def test_get_encoder_reuses_the_cache(tmp_path, small_train, monkeypatch):
    vols, table, mask = small_train
    first = get_encoder(vols, table, mask, tmp_path / "cache", epochs=2, dim=16)
    assert first.info["cached"] is False

    def no_training(*a, **k):
        raise AssertionError("retrained although the cache matches")

    monkeypatch.setattr(ft, "train_encoder", no_training)
    second = get_encoder(vols, table, mask, tmp_path / "cache", epochs=2, dim=16)
    assert second.info["cached"] is True and second.info["sha256"] == first.info["sha256"]
    np.testing.assert_array_equal(second.features(vols), first.features(vols))
    monkeypatch.undo()
    # another training set -> another encoder folder
    other = get_encoder(vols[:8], table.iloc[:8], mask, tmp_path / "cache", epochs=2, dim=16)
    assert other.info["cached"] is False and other.info["sha256"] != first.info["sha256"]
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # a user's encoder wins over the cache
    user = get_encoder(None, None, None, tmp_path / "cache", encoder_path=tmp_path / "cache" /
                       next(p.name for p in (tmp_path / "cache").iterdir()))
    assert user.info["cached"] is False
    with pytest.raises(NeuroditError, match="--train"):
        get_encoder(None, None, None, tmp_path / "cache")


def test_features_stream_in_batches(tmp_path):
    # a memmap input and a module recording its batch sizes: never more than batch_size volumes at once
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return x.mean(dim=(2, 3, 4))

    arr = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(11, 8, 8, 8))
    arr[:] = brain_volumes(11, shape=(8, 8, 8), seed=5)
    feats = Encoder(Probe(), {"kind": "torchscript", "source": "probe", "sha256": "", "dim": None,
                              "trained_on": {}}).features(np.load(tmp_path / "v.npy", mmap_mode="r"), batch_size=4)
    assert seen == [4, 4, 3] and feats.shape == (11, 1)


# --------------------------------------------------------------------------- user encoders
class _Pool(nn.Module):
    """A tiny encoder: conv + global pool -> (B, 4)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3, 4))


def test_torchscript_encoder_loads(tmp_path):
    torch.manual_seed(0)
    net = _Pool().eval()
    path = tmp_path / "enc.pt"
    torch.jit.script(net).save(str(path))
    enc = load_encoder(path)
    vols = brain_volumes(5, shape=(12, 12, 12), seed=6)
    feats = enc.features(vols)
    assert enc.info["kind"] == "torchscript" and enc.info["dim"] == 4 and feats.shape == (5, 4)
    with torch.no_grad():
        ref = net(torch.from_numpy(2 * np.clip(vols / 4e-3, 0, 1) - 1).float()[:, None]).double().numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)


def test_pickles_and_unknown_files_are_refused(tmp_path):
    net = _Pool()
    pt = tmp_path / "weights.pt"
    torch.save(net.state_dict(), pt)  # a zip with data.pkl: a pickle
    with pytest.raises(NeuroditError, match="weights.pt.*pickled"):
        load_encoder(pt)
    legacy = tmp_path / "old.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(NeuroditError, match="old.pth"):
        load_encoder(legacy)
    from safetensors.torch import save_file

    lonely = tmp_path / "lonely.safetensors"
    save_file(net.state_dict(), lonely)
    with pytest.raises(NeuroditError, match="lonely.safetensors.*JSON config"):
        load_encoder(lonely)
    with pytest.raises(NeuroditError, match="not found"):
        load_encoder(tmp_path / "missing.pt")


def test_medicalnet_style_resnet_from_safetensors(tmp_path):
    from monai.networks.nets import resnet10
    from safetensors.torch import save_file

    torch.manual_seed(0)
    kwargs = {"conv1_t_stride": 2, "shortcut_type": "B"}
    ref = resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False, **kwargs).eval()
    # as MedicalNet ships them: nn.DataParallel keys ("module.") and a classifier head we drop
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(2, 512)
    save_file(state, tmp_path / "resnet_10.safetensors")
    (tmp_path / "resnet_10.json").write_text(json.dumps(
        {"arch": {"name": "resnet", "depth": 10, "kwargs": kwargs}, "input": "zscore"}))
    enc = load_encoder(tmp_path / "resnet_10.safetensors")
    vols = brain_volumes(3, shape=(16, 16, 16), seed=7)
    feats = enc.features(vols)
    assert enc.info["kind"] == "safetensors" and feats.shape == (3, 512)
    x = torch.from_numpy(vols).float()[:, None]
    z = torch.zeros_like(x)
    for i in range(3):  # MedicalNet's input: z-score over the brain voxels, 0 outside
        b = x[i] > 0
        z[i][b] = (x[i][b] - x[i][b].mean()) / x[i][b].std()
    with torch.no_grad():
        np.testing.assert_allclose(feats, ref(z).double().numpy(), rtol=1e-4, atol=1e-5)
    # wrong depth for these weights: a shape/key error naming the file
    (tmp_path / "resnet_10.json").write_text(json.dumps({"arch": {"name": "resnet", "depth": 18}}))
    with pytest.raises(NeuroditError, match="resnet_10.safetensors"):
        load_encoder(tmp_path / "resnet_10.safetensors")


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
