"""The judge's encoder: the own encoder (train, save, load, cache) and user encoders (TorchScript,
safetensors + JSON, refused pickles)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from neurodit.errors import NeuroditError
from neurodit.metrics import encoder as en
from neurodit.metrics.encoder import Encoder, get_encoder, load_encoder, train_encoder

from .conftest import brain_volumes


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
    assert conf["trained_on"]["sha256"] == en.training_data_hash(vols, table, mask)
    assert conf["trained_on"]["objective"] == ["pooled input and gradient reconstruction", "sex", "age"]
    assert conf["weights_sha256"] == en._sha256_file(tmp_path / "enc" / "encoder.safetensors")
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

    monkeypatch.setattr(en, "train_encoder", no_training)
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


# --------------------------------------------------------------------------- determinism and the cache key
def test_training_from_scratch_is_deterministic(tmp_path, small_train):
    """Two trainings from scratch (no cache) on the same data and seed: the same features to 1e-6."""
    vols, table, mask = small_train
    a = train_encoder(vols, table, mask, tmp_path / "a", epochs=3, dim=16, seed=3).features(vols)
    b = train_encoder(vols, table, mask, tmp_path / "b", epochs=3, dim=16, seed=3).features(vols)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert a.std(0).max() > 1e-3  # not trivially equal (constant maps)
    other = train_encoder(vols, table, mask, tmp_path / "c", epochs=3, dim=16, seed=4).features(vols)
    assert np.abs(other - a).max() > 1e-3  # the seed does matter
    # the deterministic settings were switched on for training only
    assert not torch.are_deterministic_algorithms_enabled()


def test_features_are_float32_inside_a_callers_autocast(tmp_path, small_train):
    vols, table, mask = small_train
    enc = train_encoder(vols, table, mask, tmp_path / "enc", epochs=1, dim=16)
    plain = enc.features(vols)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = enc.features(vols)
    np.testing.assert_array_equal(under, plain)


def test_cache_key_covers_settings_defaults_and_the_feature_view(monkeypatch):
    base = en.cache_key("ab", {"seed": 0})
    assert base == en.cache_key("ab", {"seed": 0, "epochs": en.EncoderTraining().epochs})  # a default, spelled out
    assert base != en.cache_key("ab", {"seed": 1}) and base != en.cache_key("ac", {"seed": 0})
    monkeypatch.setattr(en, "FEATURE_VIEW", "neurodit.features/next")
    assert en.cache_key("ab", {"seed": 0}) != base  # a new feature definition never reuses an old encoder
    with pytest.raises(NeuroditError, match="unknown encoder training setting"):
        en.cache_key("ab", {"epoch": 3})
