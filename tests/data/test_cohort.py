"""read_cohort, load_volumes, the grid and the normalisation (neurodit.data)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from neurodit.data.cohort import antialias_sigma, load_volumes, read_cohort, read_nifti, resample_to_grid
from neurodit.data.grid import MNI152_BRAIN_CENTRE_MM, Grid, make_grid
from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError


# ------------------------------------------------------------------------------------------ grid
def test_make_grid_defaults_and_modes():
    g = make_grid()
    assert g.shape == (96, 112, 96) and g.voxel_size == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(g.centre, MNI152_BRAIN_CENTRE_MM)
    g32 = make_grid(shape=(32, 32, 32))  # FOV 192x224x192 mm -> 6x7x6 mm voxels
    assert g32.voxel_size == (6.0, 7.0, 6.0)
    np.testing.assert_allclose(g32.centre, MNI152_BRAIN_CENTRE_MM)
    g4 = make_grid(voxel_size=4.0)
    assert g4.shape == (48, 56, 48)
    g3 = make_grid(voxel_size=3.0)
    assert g3.shape == (64, 75, 64)  # round(224 / 3) = 75
    both = make_grid(shape=(10, 12, 14), voxel_size=5.0)
    assert both.shape == (10, 12, 14) and both.voxel_size == (5.0, 5.0, 5.0)
    # RAS: positive diagonal, no rotation.
    assert np.all(np.diag(g.affine)[:3] > 0) and np.count_nonzero(g.affine[:3, :3]) == 3


def test_grid_dict_round_trip_and_validation():
    g = make_grid(shape=(16, 18, 20))
    g2 = Grid.from_dict(g.to_dict())
    assert g2 == g and g2.shape == (16, 18, 20)
    with pytest.raises(NeuroditError, match="shape"):
        make_grid(shape=(0, 16, 16))
    with pytest.raises(NeuroditError, match="voxel-size"):
        make_grid(voxel_size=-2.0)
    with pytest.raises(NeuroditError, match="4x4"):
        Grid((4, 4, 4), np.eye(3))


def test_mni_centre_constant_matches_nilearn_mask():
    from nilearn.datasets import load_mni152_brain_mask

    m = load_mni152_brain_mask(resolution=2)
    idx = np.argwhere(m.get_fdata() > 0.5)
    mid = (idx.min(0) + idx.max(0)) / 2.0
    centre = m.affine[:3, :3] @ mid + m.affine[:3, 3]
    np.testing.assert_allclose(centre, MNI152_BRAIN_CENTRE_MM, atol=1.0)


# ------------------------------------------------------------------------------------------ normalisation
def test_normalization_exact_inverse_and_clipping():
    norm = Normalization()
    x = np.random.default_rng(0).uniform(0.0, 4.0e-3, size=1000)
    np.testing.assert_allclose(norm.to_physical(norm.to_model(x)), x, rtol=0, atol=1e-18)
    np.testing.assert_allclose(norm.to_model(np.array([0.0, 2.0e-3, 4.0e-3, -1e-3, 9e-3])),
                               [-1.0, 0.0, 1.0, -1.0, 1.0])
    x32 = x.astype(np.float32)
    y32 = norm.to_model(x32)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(norm.to_physical(y32), x32, rtol=1e-6, atol=1e-9)
    t = torch.linspace(-1e-3, 5e-3, 7)
    yt = norm.to_model(t)
    assert isinstance(yt, torch.Tensor) and float(yt.min()) == -1.0 and float(yt.max()) == 1.0
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(NeuroditError, match="unknown config key"):
        Normalization.from_dict({"vmin": 0, "vmax": 1, "scale": 2})
    with pytest.raises(NeuroditError):
        Normalization(vmin=1.0, vmax=0.0)


# ------------------------------------------------------------------------------------------ cohort table
def test_read_cohort_table_and_paths(tiny_cohort):
    c = read_cohort(tiny_cohort)
    assert len(c) == 6 and c.n_participants == 6
    t = c.table
    assert list(t.columns[:7]) == ["participant_id", "session_id", "sex", "age", "diagnosis", "synthetic", "path"]
    assert list(t["participant_id"]) == [f"sub-{i:04d}" for i in range(1, 7)]
    assert list(t["sex"]) == ["F", "M"] * 3
    assert t["session_id"].isna().all() and t["diagnosis"].isna().all()
    assert t["age"].dtype == np.float64 and t["age"].between(20, 85).all()
    assert (t["synthetic"] == 0).all()
    assert all(p.is_absolute() and p.name == f"{pid}_md.nii.gz" for p, pid in zip(c.paths, t["participant_id"], strict=True))


def test_read_cohort_sessions_labels_and_path_column(make_tiny_cohort):
    d = make_tiny_cohort("ses", n=3, sessions=2, gz=False, diagnosis=True)
    # Mixed-case and long-form labels are normalised; an extra column survives.
    lines = (d / "participants.tsv").read_text().splitlines()
    lines[0] += "\tsite"
    lines[1] = lines[1].replace("\tF\t", "\tfemale\t") + "\tA"
    lines[2] = lines[2].replace("\tF\t", "\tf\t").replace("\tCN", "\tcn") + "\tB"
    lines[3:] = [ln + "\tn/a" for ln in lines[3:]]
    (d / "participants.tsv").write_text("\n".join(lines) + "\n")
    c = read_cohort(d)
    assert len(c) == 6 and c.n_participants == 3
    assert list(c.table["session_id"]) == ["ses-01", "ses-02"] * 3
    assert list(c.table["sex"][:2]) == ["F", "F"] and c.table["diagnosis"][1] == "CN"
    assert list(c.table["site"][:3]) == ["A", "B", None]
    assert [p.name for p in c.paths[:2]] == ["sub-0001_ses-01_md.nii", "sub-0001_ses-02_md.nii"]

    p = make_tiny_cohort("pathcol", n=2, path_column=True)
    c2 = read_cohort(p)
    assert [q.parent.name for q in c2.paths] == ["maps", "maps"]
    # A symlinked map listed in the path column is the same file the folder scan sees.
    (p / "maps" / "sub-0002_md.nii.gz").rename(p / "elsewhere.nii.gz.bak")
    (p / "maps" / "sub-0002_md.nii.gz").symlink_to(p / "elsewhere.nii.gz.bak")
    assert read_cohort(p).paths[1] == p.resolve() / "maps" / "sub-0002_md.nii.gz"


# ------------------------------------------------------------------------------------------ volumes
def test_load_volumes_native_grid_reorients_to_ras(make_tiny_cohort):
    ras = make_tiny_cohort("ras", n=2, seed=3)
    las = make_tiny_cohort("las", n=2, seed=3, flip_x=True)
    v_ras, g_ras = load_volumes(read_cohort(ras))
    v_las, g_las = load_volumes(read_cohort(las))
    assert v_ras.shape == (2, 24, 28, 24) and v_ras.dtype == np.float32
    # The LAS files store the same world image with x reversed: after RAS reorientation the
    # arrays agree except the flipped sampling of the (seeded) noise, so compare the noise-free part.
    raw = nib.load(las / "sub-0001_md.nii.gz")
    assert nib.aff2axcodes(raw.affine) == ("L", "A", "S")
    np.testing.assert_array_equal(v_las[0], np.asarray(raw.dataobj)[::-1])
    np.testing.assert_allclose(g_las.affine, g_ras.affine)
    assert abs(float(v_ras.mean()) - float(v_las.mean())) < 1e-6
    # The ventricle (CSF, 3e-3 mm²/s) sits at the same world position in both.
    assert np.unravel_index(np.argmax(v_las[0]), v_las[0].shape)[0] in range(9, 15)


def test_load_volumes_rejects_mixed_grids(make_tiny_cohort):
    d = make_tiny_cohort(n=3)
    img = nib.load(d / "sub-0002_md.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), d / "sub-0002_md.nii.gz")
    with pytest.raises(NeuroditError, match=r"sub-0002_md.nii.gz.*shape 23x28x24 differs from sub-0001"):
        load_volumes(read_cohort(d))


def test_resample_identity_and_linear_ramp():
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-40.0, -50.0, -30.0]
    data = np.random.default_rng(0).random((20, 24, 16)).astype(np.float32)
    same = resample_to_grid(data, aff, Grid(data.shape, aff))
    np.testing.assert_allclose(same, data, atol=1e-6)
    # A linear function of world position survives smoothing + trilinear interpolation exactly
    # (symmetric Gaussian preserves ramps) away from the borders.
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape], indexing="ij"), -1)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    ramp = (1e-3 + 1e-5 * world @ np.array([1.0, 2.0, -0.5])).astype(np.float32)
    g = make_grid(shape=(8, 9, 7), voxel_size=(9.0, 9.0, 7.0))
    out = resample_to_grid(ramp, aff, g)
    gw = np.stack(np.meshgrid(*[np.arange(s) for s in g.shape], indexing="ij"), -1) @ g.affine[:3, :3].T \
        + g.affine[:3, 3]
    expect = 1e-3 + 1e-5 * gw @ np.array([1.0, 2.0, -0.5])
    inside = np.all((gw > world.min((0, 1, 2)) + 16) & (gw < world.max((0, 1, 2)) - 16), axis=-1)
    assert inside.sum() > 20
    np.testing.assert_allclose(out[inside], expect[inside], rtol=1e-4)


def test_antialiasing_removes_checkerboard():
    # 2 mm checkerboard (input Nyquist) downsampled to 6 mm: without the filter it aliases into a
    # full-amplitude pattern; with it the output is flat.
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = -48.0
    ijk = np.indices((48, 48, 48)).sum(0)
    board = np.where(ijk % 2 == 0, 1.0, -1.0).astype(np.float32)
    g_aff = np.diag([6.0, 6.0, 6.0, 1.0])
    g_aff[:3, 3] = -42.0  # grid voxel k sits on input voxel 3 + 3k: odd step, alternating signs
    g = Grid((12, 12, 12), g_aff)
    np.testing.assert_allclose(antialias_sigma(aff, g), np.sqrt(8) / 2.3548, rtol=1e-3)
    smooth = resample_to_grid(board, aff, g)
    from scipy import ndimage

    m = np.linalg.inv(aff) @ g.affine
    naive = ndimage.affine_transform(board, m[:3, :3], offset=m[:3, 3], output_shape=g.shape, order=1)
    core = (slice(3, 9),) * 3
    assert np.abs(naive[core]).mean() > 0.9
    assert np.abs(smooth[core]).max() < 0.01


def test_read_nifti_accepts_trailing_singleton_and_hashes_bytes(tmp_path):
    import hashlib

    vol = np.full((6, 7, 8, 1), 1e-3, dtype=np.float32)
    p = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), p)
    loaded = read_nifti(p)
    assert loaded.data.shape == (6, 7, 8)
    assert loaded.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
