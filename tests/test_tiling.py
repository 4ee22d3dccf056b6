"""neurodit.tiling: exact round trips (numpy/torch, batch, odd sizes, axes), spec checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.tiling import TilingSpec, make_spec, mosaic_to_volume, volume_to_mosaic

AFFINE = np.array([[2.0, 0, 0, -98.0], [0, 2.0, 0, -134.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1.0]])


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_32_cube_axis2_is_6x6_grid_of_32_tiles_with_4_fill_cells():
    vol = _rand((32, 32, 32))
    spec = make_spec(vol.shape, axis=2, fill=-1.0)
    assert (spec.rows, spec.cols, spec.tile_shape, spec.mosaic_shape) == (6, 6, (32, 32), (192, 192))
    assert spec.pad == ((0, 0), (0, 0))
    mosaic = volume_to_mosaic(vol, spec)
    assert mosaic.shape == (192, 192) and mosaic.dtype == np.float32
    # slice k sits in row k // 6, column k % 6: check slice 7 (row 1, column 1) and the last one
    np.testing.assert_array_equal(mosaic[32:64, 32:64], vol[:, :, 7])
    np.testing.assert_array_equal(mosaic[160:192, 32:64], vol[:, :, 31])  # row 5, column 1
    assert np.all(mosaic[160:192, 64:192] == -1.0)  # cells 32..35 (row 5, columns 2-5) are empty
    assert np.count_nonzero(mosaic == -1.0) == 4 * 32 * 32
    np.testing.assert_array_equal(mosaic_to_volume(mosaic, spec), vol)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("shape", [(31, 37, 29), (16, 16, 5), (7, 20, 13), (1, 9, 4)])
def test_odd_sizes_pad_to_square_tiles_and_round_trip_exactly(shape, axis):
    vol = _rand(shape, seed=sum(shape) + axis)
    spec = make_spec(shape, axis=axis, fill=0.5)
    h, w = [s for i, s in enumerate(shape) if i != axis]
    t = max(h, w)
    assert spec.tile_shape == (t, t) and spec.rows == spec.cols
    assert spec.rows == int(np.ceil(np.sqrt(shape[axis])))
    assert spec.in_plane_shape == (h, w)
    assert [sum(p) for p in spec.pad] == [t - h, t - w]
    assert all(b <= a <= b + 1 for b, a in spec.pad)  # centred, the odd voxel after
    mosaic = volume_to_mosaic(vol, spec)
    assert mosaic.shape[0] == mosaic.shape[1] == spec.rows * t
    back = mosaic_to_volume(mosaic, spec)
    assert back.dtype == np.float32 and back.shape == shape
    assert np.array_equal(back, vol)  # bit-exact
    # axis order: tile 0 is slice 0 along ``axis`` with the other two axes in order, padded
    (pb0, _), (pb1, _) = spec.pad
    np.testing.assert_array_equal(mosaic[pb0:pb0 + h, pb1:pb1 + w], np.take(vol, 0, axis=axis))
    assert np.all(mosaic[:pb0, :t] == 0.5) and np.all(mosaic[pb0 + h:t, :t] == 0.5)


def test_axis_choice_changes_the_tiles_as_documented():
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    for axis, tile0 in ((0, vol[0]), (1, vol[:, 0, :]), (2, vol[:, :, 0])):
        spec = make_spec(vol.shape, axis=axis)
        (pb0, _), (pb1, _) = spec.pad
        m = volume_to_mosaic(vol, spec)
        np.testing.assert_array_equal(m[pb0:pb0 + tile0.shape[0], pb1:pb1 + tile0.shape[1]], tile0)


def test_torch_batch_matches_numpy_and_round_trips():
    vols = _rand((3, 11, 13, 9), seed=4)
    spec = make_spec(vols.shape[1:], axis=1, fill=-1.0)
    m_np = volume_to_mosaic(vols, spec)
    assert m_np.shape == (3,) + spec.mosaic_shape
    x = torch.from_numpy(vols)
    m_t = volume_to_mosaic(x, spec)
    assert isinstance(m_t, torch.Tensor) and m_t.dtype == torch.float32 and m_t.shape == (3,) + spec.mosaic_shape
    assert np.array_equal(m_t.numpy(), m_np)
    for b in range(3):  # batch element b == single volume b
        assert np.array_equal(m_np[b], volume_to_mosaic(vols[b], spec))
    back = mosaic_to_volume(m_t, spec)
    assert torch.equal(back, x)
    assert torch.equal(mosaic_to_volume(m_t[1], spec), x[1])
    # bf16 / float64 keep their dtype
    assert volume_to_mosaic(x.to(torch.bfloat16), spec).dtype == torch.bfloat16
    assert volume_to_mosaic(vols.astype(np.float64), spec).dtype == np.float64


def test_slice_selection_fills_unselected_slices():
    vol = _rand((10, 12, 14))
    spec = make_spec(vol.shape, axis=2, slices=range(2, 14, 3), fill=-1.0)
    assert spec.slices == (2, 5, 8, 11) and spec.rows == 2
    back = mosaic_to_volume(volume_to_mosaic(vol, spec), spec)
    np.testing.assert_array_equal(back[:, :, list(spec.slices)], vol[:, :, list(spec.slices)])
    others = [k for k in range(14) if k not in spec.slices]
    assert np.all(back[:, :, others] == -1.0)


def test_tile_size_and_grid_options_make_larger_mosaics():
    spec = make_spec((30, 30, 16), tile_size=32, grid=5)
    assert spec.tile_shape == (32, 32) and spec.mosaic_shape == (160, 160) and spec.pad == ((1, 1), (1, 1))
    vol = _rand((30, 30, 16))
    assert np.array_equal(mosaic_to_volume(volume_to_mosaic(vol, spec), spec), vol)
    with pytest.raises(NeuroditError):
        make_spec((30, 30, 16), tile_size=20)
    with pytest.raises(NeuroditError):
        make_spec((30, 30, 16), grid=3)


def test_spec_to_dict_from_dict_round_trip_through_json():
    spec = make_spec((31, 37, 29), axis=0, slices=[0, 5, 9], fill=-1.0, affine=AFFINE)
    again = TilingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and np.array_equal(again.affine_array, AFFINE)
    assert spec.to_dict()["mosaic_shape"] == list(spec.mosaic_shape)
    with pytest.raises(NeuroditError, match="unknown keys"):
        TilingSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(NeuroditError, match="does not turn"):
        TilingSpec.from_dict({**spec.to_dict(), "pad": [[0, 0], [0, 0]]})
    with pytest.raises(dataclasses_frozen_error()):
        spec.axis = 1  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_shape_mismatches_raise():
    spec = make_spec((8, 8, 8))
    with pytest.raises(NeuroditError, match="volume shape"):
        volume_to_mosaic(np.zeros((8, 8, 9), np.float32), spec)
    with pytest.raises(NeuroditError, match="volume shape"):
        volume_to_mosaic(np.zeros((8, 8), np.float32), spec)
    with pytest.raises(NeuroditError, match="mosaic shape"):
        mosaic_to_volume(np.zeros((24, 25), np.float32), spec)
    with pytest.raises(NeuroditError):
        make_spec((8, 8), axis=2)
    with pytest.raises(NeuroditError):
        make_spec((8, 8, 8), axis=3)


def test_round_trip_on_mni_template_and_phantom():
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=2)
    vol = np.asarray(img.get_fdata(), dtype=np.float32)  # (99, 117, 95)
    for axis in (0, 1, 2):
        spec = make_spec(vol.shape, axis=axis, fill=0.0, affine=img.affine)
        m = volume_to_mosaic(vol, spec)
        assert m.shape[0] == m.shape[1]
        assert np.array_equal(mosaic_to_volume(m, spec), vol)
    spec = make_spec(vol.shape, axis=2)
    assert spec.rows == 10 and spec.tile_shape == (117, 117) and spec.pad == ((9, 9), (0, 0))

    from neurodit.data.phantom import draw_subjects, load_templates, synthesize_subject

    t = load_templates(6.0)
    vols = np.stack([synthesize_subject(t, r) for _, r in draw_subjects("adni", 2, seed=1).iterrows()])
    spec = make_spec(t.shape, fill=-1.0)
    x = torch.from_numpy(vols)
    assert torch.equal(mosaic_to_volume(volume_to_mosaic(x, spec), spec), x)
