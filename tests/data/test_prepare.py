"""prepare / load_prepared / Prepared.to_nifti, through the function and the CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.data.grid import make_grid
from neurodit.data.prepare import load_prepared, mni_mask_on_grid, prepare

SHAPE = (16, 18, 16)


def test_prepare_writes_contract(tiny_cohort, tmp_path):
    out = prepare(tiny_cohort, tmp_path / "prep", shape=SHAPE)
    assert sorted(p.name for p in out.iterdir()) == ["mask.npy", "participants.tsv", "prepare.json", "run.json",
                                                      "volumes.npy"]
    vols = np.load(out / "volumes.npy", mmap_mode="r")
    assert isinstance(vols, np.memmap) and vols.shape == (6, *SHAPE) and vols.dtype == np.float32
    assert float(vols.min()) == -1.0 and float(vols.max()) <= 1.0
    mask = np.load(out / "mask.npy")
    assert mask.dtype == bool and mask.shape == SHAPE
    assert np.all(vols[:, ~mask] == -1.0)
    # The mask is brain-sized: the MNI152 brain (1.88 l) dilated by 8 mm, cut to the data's support
    # (the tiny ellipsoid brains): between 1.0 and 3.0 litres.
    litres = mask.sum() * np.prod(make_grid(shape=SHAPE).voxel_size) / 1e6
    assert 1.0 < litres < 3.0
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["n"] == 6 and meta["grid"]["shape"] == list(SHAPE)
    assert meta["grid"]["voxel_size"] == [12.0, 224 / 18, 12.0]
    assert meta["normalization"] == {"vmin": 0.0, "vmax": 4.0e-3, "unit": "mm2/s"}
    assert meta["counts"] == {"volumes": 6, "participants": 6, "sex": {"F": 3, "M": 3}}
    assert meta["source"] == str(tiny_cohort.resolve())
    assert "torch" in meta["versions"] and "nibabel" in meta["versions"]
    for name, digest in meta["checksums"].items():
        assert hashlib.sha256((tiny_cohort / name).read_bytes()).hexdigest() == digest
    assert len(meta["checksums"]) == 6
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["shape"] == list(SHAPE) and "versions" in run


def test_load_prepared_and_physical_round_trip(tiny_cohort, tmp_path):
    out = prepare(tiny_cohort, tmp_path / "prep", shape=SHAPE)
    prep = load_prepared(out)
    assert len(prep) == 6 and prep.grid == make_grid(shape=SHAPE)
    assert list(prep.table["participant_id"]) == [f"sub-{i:04d}" for i in range(1, 7)]
    assert list(prep.table["sex"]) == ["F", "M"] * 3 and "source_path" in prep.table.columns
    assert not prep.volumes.flags.writeable
    # model range -> mm²/s gives back the resampled physical volumes inside the mask.
    phys, grid = load_volumes(read_cohort(tiny_cohort), prep.grid)
    back = prep.to_mm2s(prep.volumes[2])
    np.testing.assert_allclose(back[prep.mask], np.clip(phys[2][prep.mask], 0, 4e-3), rtol=1e-5, atol=1e-9)
    assert np.all(back[~prep.mask] == 0.0)
    # NIfTI written back: mm²/s, grid affine, RAS; identical bytes when written twice.
    nii = prep.to_nifti(prep.volumes[2], tmp_path / "vol.nii.gz")
    img = nib.load(nii)
    np.testing.assert_allclose(img.affine, prep.grid.affine)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), back)
    brain = back[back > 0]
    assert 0.6e-3 < float(np.median(brain)) < 1.0e-3  # WM/GM MD
    first = nii.read_bytes()
    assert prep.to_nifti(prep.volumes[2], tmp_path / "vol.nii.gz").read_bytes() == first
    import torch

    np.testing.assert_array_equal(prep.to_mm2s(torch.from_numpy(np.array(prep.volumes[2]))), back)


def test_prepare_reorients_las_input(make_tiny_cohort, tmp_path):
    # Same world images stored RAS and LAS: prepared volumes agree up to the mirrored noise pattern.
    ras = prepare(make_tiny_cohort("ras", n=2, seed=1), tmp_path / "p_ras", shape=SHAPE)
    las = prepare(make_tiny_cohort("las", n=2, seed=1, flip_x=True), tmp_path / "p_las", shape=SHAPE)
    a, b = np.load(ras / "volumes.npy"), np.load(las / "volumes.npy")
    assert np.abs(a - b).max() < 0.05  # noise (2e-5 mm²/s) is 0.01 in model units
    assert np.abs(a - b[:, ::-1]).max() > 0.3  # the right-hemisphere lesion: an unflipped image differs


def test_prepare_is_deterministic_and_overwrite(tiny_cohort, tmp_path):
    a = prepare(tiny_cohort, tmp_path / "a", shape=SHAPE)
    b = prepare(tiny_cohort, tmp_path / "b", shape=SHAPE)
    assert (a / "volumes.npy").read_bytes() == (b / "volumes.npy").read_bytes()
    assert (a / "participants.tsv").read_text() == (b / "participants.tsv").read_text()
    prepare(tiny_cohort, a, voxel_size=24.0, overwrite=True)
    assert np.load(a / "volumes.npy", mmap_mode="r").shape == (6, 8, 9, 8)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_prepare_sessions_kept_as_rows(make_tiny_cohort, tmp_path):
    d = make_tiny_cohort("ses", n=2, sessions=3, diagnosis=True)
    prep = load_prepared(prepare(d, tmp_path / "prep", shape=SHAPE))
    assert len(prep) == 6 and list(prep.table["session_id"]) == ["ses-01", "ses-02", "ses-03"] * 2
    assert json.loads((prep.path / "prepare.json").read_text())["counts"]["participants"] == 2


def test_path_column_outside_folder(make_tiny_cohort, tmp_path):
    d = make_tiny_cohort("pc", n=2, path_column=True)
    (d / "maps").rename(tmp_path / "shared_maps")
    tsv = d / "participants.tsv"
    tsv.write_text(tsv.read_text().replace("maps/", "../shared_maps/"))
    meta = json.loads((prepare(d, tmp_path / "prep", shape=SHAPE) / "prepare.json").read_text())
    assert sorted(meta["checksums"]) == ["../shared_maps/sub-0001_md.nii.gz", "../shared_maps/sub-0002_md.nii.gz"]


def test_cli_prepare(tiny_cohort, tmp_path):
    res = CliRunner().invoke(app, ["prepare", str(tiny_cohort), "--out", str(tmp_path / "p"),
                                   "--shape", "8", "10", "8"])
    assert res.exit_code == 0, res.output
    assert "prepare: wrote" in res.stdout
    assert np.load(tmp_path / "p" / "volumes.npy", mmap_mode="r").shape == (6, 8, 10, 8)
    res = CliRunner().invoke(app, ["prepare", str(tiny_cohort), "--out", str(tmp_path / "q"),
                                   "--voxel-size", "16"])
    assert res.exit_code == 0, res.output
    assert load_prepared(tmp_path / "q").grid.shape == (12, 14, 12)


def test_mni_mask_on_grid_volume():
    # nilearn's brain mask is 235375 voxels of 8 mm³ = 1.88 litres; resampled to 4 mm it keeps that.
    g = make_grid(voxel_size=4.0)
    litres = mni_mask_on_grid(g).sum() * 64 / 1e6
    assert abs(litres - 1.883) < 0.05


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("neurodit.data.phantom") is None,
                    reason="neurodit.data.phantom not written yet")
def test_phantom_then_prepare_gives_mm2s(tmp_path):
    from neurodit.data.phantom import make_phantom_cohort

    src = make_phantom_cohort("camcan", n=8, out=tmp_path / "X", seed=0)
    res = CliRunner().invoke(app, ["prepare", str(src), "--out", str(tmp_path / "P")])
    assert res.exit_code == 0, res.output
    prep = load_prepared(tmp_path / "P")
    assert len(prep) == 8 and prep.grid.shape == (96, 112, 96)
    img = nib.load(prep.to_nifti(prep.volumes[0], tmp_path / "v0.nii.gz"))
    x = img.get_fdata()
    assert 2.5e-3 < float(np.percentile(x[x > 0], 99.5)) < 3.5e-3  # CSF near 3e-3 mm²/s
    # WM/GM-like bulk: 0.7-0.85e-3 in tissue, raised by partial volume with CSF, lesions and atrophy
    assert 0.6e-3 < float(np.median(x[x > 0])) < 1.4e-3
