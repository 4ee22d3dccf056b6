"""neurodit.mosaic_files: the tile/untile CLI (exact .npy, 8-bit .png), bad input, PNG renderers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_nifti_3d
from neurodit.errors import NeuroditError
from neurodit.io import write_nifti
from neurodit.mosaic_files import save_mosaic_png, tile_file, untile_file, write_gray_png
from neurodit.tiling import make_spec, volume_to_mosaic

AFFINE = np.array([[2.0, 0, 0, -98.0], [0, 2.0, 0, -134.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1.0]])


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _write_vol(path, shape=(13, 17, 11), affine=AFFINE, seed=0):
    vol = np.abs(_rand(shape, seed)) * 1e-3  # mm²/s-like values
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return vol


def test_cli_tile_untile_npy_restores_voxels_and_affine(tmp_path):
    affine = AFFINE.copy()
    affine[:3, 3] = (-97.5, -130.25, -70.0)
    vol = _write_vol(tmp_path / "v.nii.gz", affine=affine)
    runner = CliRunner()
    res = runner.invoke(app, ["tile", str(tmp_path / "v.nii.gz"), "--out", str(tmp_path / "m.npy")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["spec"]["volume_shape"] == [13, 17, 11] and meta["format"] == "npy"
    assert np.load(tmp_path / "m.npy").shape == (68, 68)  # 4x4 grid of 17x17 tiles
    res = runner.invoke(app, ["untile", str(tmp_path / "m.npy"), "--out", str(tmp_path / "back.nii.gz")])
    assert res.exit_code == 0, res.output
    back = nib.load(str(tmp_path / "back.nii.gz"))
    assert back.get_data_dtype() == np.float32
    assert np.array_equal(np.asarray(back.dataobj), vol)
    assert np.array_equal(back.affine, affine)


def test_cli_tile_png_is_8bit_gray_with_window_and_untiles_approximately(tmp_path):
    vol = _write_vol(tmp_path / "v.nii")
    tile_file(tmp_path / "v.nii", tmp_path / "m.png", axis=0)
    meta = json.loads((tmp_path / "m.json").read_text())
    lo, hi = meta["window"]
    assert lo == pytest.approx(0.0) and hi == pytest.approx(float(vol.max()), rel=1e-6)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "L" and img.size == (68, 68)  # 13 slices -> 4x4 grid of 17x17
        px = np.asarray(img)
    assert px.max() == 255
    untile_file(tmp_path / "m.png", tmp_path / "b.nii.gz")
    back = np.asarray(nib.load(str(tmp_path / "b.nii.gz")).dataobj)
    assert np.abs(back - vol).max() <= (hi - lo) / 255 / 2 + 1e-9  # 8-bit quantisation only


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path):
    runner = CliRunner()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "v4.nii.gz"))
    res = runner.invoke(app, ["tile", str(tmp_path / "v4.nii.gz"), "--out", str(tmp_path / "m.npy")])
    assert res.exit_code == 2 and "4D volume" in res.output and "v4.nii.gz" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.npy").exists() and not (tmp_path / "m.json").exists()

    np.save(tmp_path / "lone.npy", np.zeros((8, 8), np.float32))
    res = runner.invoke(app, ["untile", str(tmp_path / "lone.npy"), "--out", str(tmp_path / "o.nii.gz")])
    assert res.exit_code == 2 and "lone.json" in res.output and "not found" in res.output
    assert not (tmp_path / "o.nii.gz").exists()

    _write_vol(tmp_path / "v.nii.gz")
    tile_file(tmp_path / "v.nii.gz", tmp_path / "m.npy")
    np.save(tmp_path / "m.npy", np.zeros((60, 60), np.float32))  # spec says 68x68
    res = runner.invoke(app, ["untile", str(tmp_path / "m.npy"), "--out", str(tmp_path / "o.nii.gz")])
    assert res.exit_code == 2 and "does not match" in res.output and "m.npy" in res.output
    assert not (tmp_path / "o.nii.gz").exists()

    res = runner.invoke(app, ["tile", str(tmp_path / "v.nii.gz"), "--out", str(tmp_path / "m.jpg")])
    assert res.exit_code == 2 and ".npy or .png" in res.output
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(NeuroditError, match="not a readable NIfTI"):
        load_nifti_3d(tmp_path / "bad.nii.gz")


def test_write_nifti_is_deterministic_and_png_helpers(tmp_path):
    vol = np.abs(_rand((6, 7, 8)))
    a = write_nifti(vol, AFFINE, tmp_path / "a.nii.gz").read_bytes()
    b = write_nifti(vol, AFFINE, tmp_path / "b.nii.gz").read_bytes()
    assert a == b and a[4:8] == b"\0\0\0\0"  # gzip mtime field is 0
    with pytest.raises(NeuroditError):
        write_nifti(vol, AFFINE, tmp_path / "a.img")

    m = np.linspace(0.0, 3e-3, 64 * 64, dtype=np.float32).reshape(64, 64)
    assert write_gray_png(m, tmp_path / "g.png", vmin=0.0, vmax=3e-3) == (0.0, 3e-3)
    px = np.asarray(Image.open(tmp_path / "g.png"))
    assert px.shape == (64, 64) and px[0, 0] == 0 and px[-1, -1] == 255

    spec = make_spec((16, 16, 9), fill=0.0)
    batch = torch.rand(3, 16, 16, 9) * 3e-3
    mos = volume_to_mosaic(batch, spec)
    p = save_mosaic_png(mos, tmp_path / "fig.png", vmin=0, vmax=3e-3, cmap="magma",
                        colorbar_label="MD (mm²/s)", titles=["a", "b", "c"], spec=spec)
    with Image.open(p) as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100
    save_mosaic_png(mos[0].numpy(), tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 0
    with pytest.raises(NeuroditError):
        save_mosaic_png(np.zeros((2, 3, 4, 5)), tmp_path / "x.png")
