"""On-disk volume sets (memory flat in N): the loader's ``out=`` memmap, DiskVolumes / ModelRange, and
evaluate_arrays giving the same numbers on on-disk inputs as on in-memory ones."""

from __future__ import annotations

import gc
import math

import numpy as np

from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.data.normalize import Normalization
from neurodit.metrics.evaluate import EvalConfig, evaluate_arrays
from neurodit.metrics.families import _class_values, pooled_gram
from neurodit.metrics.volumes import DiskVolumes, ModelRange, chunks, take

from .conftest import brain_volumes


def _disk(tmp_path, name: str, arr: np.ndarray) -> DiskVolumes:
    np.save(tmp_path / f"{name}.npy", arr)
    return DiskVolumes(tmp_path / f"{name}.npy")


def test_load_volumes_out_memmap_equals_in_memory(make_tiny_cohort, tmp_path):
    cohort = read_cohort(make_tiny_cohort(n=3, seed=5))
    mem, grid = load_volumes(cohort)
    mm, grid2 = load_volumes(cohort, out=tmp_path / "v.npy")
    assert isinstance(mm, np.memmap) and mm.dtype == np.float32 and mm.shape == mem.shape
    np.testing.assert_array_equal(np.asarray(mm), mem)
    assert grid.same_as(grid2)
    vols, _ = DiskVolumes.from_cohort(cohort)
    scratch = vols.path.parent
    assert vols.shape == mem.shape and vols.ndim == 4 and len(vols) == 3
    np.testing.assert_array_equal(vols[1], mem[1])
    np.testing.assert_array_equal(vols[[2, 0]], mem[[2, 0]])
    np.testing.assert_array_equal(take(vols, np.array([2, 0, 2])), mem[[2, 0, 2]])
    np.testing.assert_array_equal(np.asarray(vols), mem)
    del vols
    gc.collect()
    assert not scratch.exists()  # the scratch folder goes with the object


def test_model_range_chunks_and_gram_match_in_memory(tmp_path):
    vols = brain_volumes(5, shape=(16, 16, 16), seed=4)
    norm = Normalization()
    lazy = ModelRange(_disk(tmp_path, "a", vols), norm)
    np.testing.assert_array_equal(lazy[1:3], norm.to_model(vols[1:3]))
    got = np.concatenate([c for _, c in chunks(lazy, 2)])
    np.testing.assert_array_equal(got, norm.to_model(vols))
    mask = vols.mean(0) > 1e-4
    f = norm.to_model(vols)[:, mask].astype(np.float64)
    np.testing.assert_allclose(pooled_gram([lazy[:2], lazy], mask, chunk=2).numpy(),
                               np.r_[f[:2], f] @ np.r_[f[:2], f].T, rtol=1e-12)


def test_streamed_tissue_values_draw_the_same_positions(tmp_path):
    vols = brain_volumes(6, shape=(16, 16, 16), seed=6)
    cm = vols.mean(0) > 0.8e-3
    lazy = _disk(tmp_path, "t", vols)
    for n in (50, 10_000):  # subsampled, and all values
        a = _class_values(vols, cm, n, np.random.default_rng(3))
        b = _class_values(lazy, cm, n, np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)


def _assert_same(a, b, path="metrics"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not (path.startswith("metrics.timings_s") or path.endswith(".seconds")):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), \
            (path, a, b)
    elif not isinstance(a, float) and "seconds" not in path and "timings" not in path:
        assert a == b, (path, a, b)


def test_evaluate_arrays_on_disk_equals_in_memory(tmp_path):
    real, syn, train = (brain_volumes(n, shape=(24, 24, 24), seed=s) for n, s in ((8, 11), (10, 12), (8, 13)))
    cfg = EvalConfig(max_pairs=40, permutations=50, bootstrap=50, coherence_pairs=10, figures=False,
                     c2st_views=("voxel", "texture"), c2st_permutations=20, features=False)
    kw = {"voxel_volume_ml": 0.008}
    mem = evaluate_arrays(real, syn, train, cfg, **kw)
    disk = evaluate_arrays(_disk(tmp_path, "r", real), _disk(tmp_path, "s", syn), _disk(tmp_path, "t", train),
                           cfg, **kw)
    _assert_same(mem, disk)
    assert mem["n_synthetic"] == 10 and "morphometry" in disk and disk["c2st"]["views"]["texture"]["n_real"] == 8
