"""neurodit.generators.inputs: the input adapters, and the loop / run folder / sampler asking them (never a
generator's name)."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.generators import registry
from neurodit.generators.dit import DiffusionGenerator
from neurodit.generators.inputs import MosaicInputs, VolumeInputs

SRC = Path(__file__).resolve().parents[2] / "src" / "neurodit"


@pytest.mark.parametrize("adapter", [MosaicInputs, VolumeInputs])
def test_encode_then_decode_gives_the_prepared_volumes_back_with_standardization(adapter, gen_prep):
    from neurodit.data.prepare import load_prepared
    from neurodit.tiling import make_spec

    prep = load_prepared(gen_prep)
    vols = np.asarray(prep.volumes, dtype=np.float32)  # (N, D, H, W) model range
    inputs = adapter(None, make_spec(prep.grid.shape, fill=-1.0, affine=prep.grid.affine))
    raw = inputs.encode_raw(vols)  # (N, 1, S, S) mosaics or (N, 1, D, H, W) volumes
    assert raw.shape[:2] == (len(vols), 1)
    z = inputs.fit_standardizer(raw, "pixel", 0.01)
    assert inputs.standardizer is not None and not torch.allclose(z, raw)
    assert torch.equal(inputs.encode(vols), z)
    back = inputs.decode(z)  # (N, D, H, W) model range
    assert back.shape == vols.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, vols, atol=1e-5)
    assert tuple(inputs.preview_mosaics(z[:2], clamp=True).shape[:2]) == (2, 1)


def test_registry_is_the_one_list_of_generator_names():
    from neurodit.train.config import TrainConfig

    assert registry.names() == ("dit", "ddpm3d", "pca") and registry.DEFAULT in registry.names()
    assert registry.diffusion_names() == ("dit", "ddpm3d")
    assert not registry.is_diffusion("pca") and not registry.is_diffusion("gan")
    with pytest.raises(NeuroditError, match="generator must be one of"):
        TrainConfig(generator="gan")


@pytest.mark.parametrize("module", ["train/loop.py", "runs.py", "sample.py"])
def test_loop_run_folder_and_sampler_name_no_generator(module):
    """What differs between generators is asked of the registry and the input adapter: no string
    literal in these modules is a generator's name (docstrings and messages may mention them)."""
    tree = ast.parse((SRC / module).read_text())
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not literals & set(registry.names())


class CountingVolumes(VolumeInputs):
    """VolumeInputs that count the calls the loop and the sampler make."""

    calls: dict[str, int] = {}

    def encode_raw(self, volumes):
        CountingVolumes.calls["encode_raw"] = CountingVolumes.calls.get("encode_raw", 0) + 1
        return super().encode_raw(volumes)

    def decode(self, x):
        CountingVolumes.calls["decode"] = CountingVolumes.calls.get("decode", 0) + 1
        return super().decode(x)


def test_a_registered_generator_kind_trains_and_samples_through_its_adapter(gen_cfg, tmp_path,
                                                                                     monkeypatch):
    """A new generator is a registry entry with an input adapter: the loop, the run folder and the
    sampler need no change to train, resume and sample it."""
    from neurodit.generators.base import fit, sample
    from neurodit.runs import TrainedRun, is_run_folder, read_generator

    module = types.ModuleType("fake_generator")
    module.GENERATOR = DiffusionGenerator("fake3d", CountingVolumes, recipe="ddpm3d")
    monkeypatch.setitem(sys.modules, "fake_generator", module)
    monkeypatch.setitem(registry.REGISTRY, "fake3d", "fake_generator")
    CountingVolumes.calls.clear()
    cfg = gen_cfg("fake", generator="fake3d", unet={"channels": [8, 16]}, preview_per_class=0)
    assert registry.is_diffusion("fake3d") and cfg.unet.channels == [8, 16]
    run = fit(cfg.prep_dir, cfg)
    assert read_generator(run) == "fake3d" and is_run_folder(run) and CountingVolumes.calls["encode_raw"] == 1
    opened = TrainedRun(run, torch.device("cpu"))
    assert isinstance(opened.inputs, CountingVolumes) and opened.input_shape == (1, 16, 16, 16)
    assert opened.inputs.channels == opened.model.in_channels == 1
    out = sample(run, 2, tmp_path / "syn", steps=2, progress=False)
    assert CountingVolumes.calls["decode"] == 1 and (out / "participants.tsv").is_file()
