"""``neurodit dti`` (neurodit.data.dti): the tensor fit against dipy on real data (dipy's shipped
``small_64D``, offline), known tensors recovered, both b-vector layouts, bad input through the CLI, and the
folder mode's cohort folders."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import tree_hash
from neurodit.cli import app
from neurodit.data.cohort import read_cohort
from neurodit.data.dti import MAPS, dti_file

# Two known tensors (mm²/s): free-water-like isotropic, and a white-matter-like prolate one.
ISO = np.array([1.0e-3, 1.0e-3, 1.0e-3])
ANISO = np.array([1.7e-3, 0.3e-3, 0.3e-3])


def small_64d() -> tuple[Path, Path, Path]:
    """dipy's shipped small_64D (10x10x10, 1 b0 + 64 directions at b ~1000 s/mm², bvec Nx3 with a NaN b0
    row): (nii, bval, bvec), from the installed package, no network."""
    from dipy.data import get_fnames

    nii, bval, bvec = (Path(p) for p in get_fnames(name="small_64D"))
    return nii, bval, bvec


def expected(evals: np.ndarray) -> dict[str, float]:
    """MD, FA, AD, RD of eigenvalues ``evals`` (3,) (Basser & Pierpaoli 1996)."""
    md = evals.mean()
    fa = np.sqrt(1.5 * ((evals - md) ** 2).sum() / (evals**2).sum())
    return {"md": md, "fa": fa, "ad": evals.max(), "rd": np.sort(evals)[:2].mean()}


def fibonacci_dirs(n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) spread over the sphere (golden-angle spiral)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def synthetic_dwi(root: Path, bvec_layout: str = "3xN") -> dict[str, Path]:
    """A noise-free 10x10x10 DWI (2 b0 + 30 directions at b = 1000 s/mm²) built with
    ``dipy.sims.voxel.single_tensor``: background 0, block [2:8)^3 isotropic (x < 5) and anisotropic along
    (1, 1, 0)/sqrt(2) (x >= 5); its mask is the block."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import single_tensor

    root.mkdir(parents=True, exist_ok=True)
    dirs = fibonacci_dirs(30)
    bvals = np.r_[0.0, 0.0, np.full(30, 1000.0)]
    bvecs = np.r_[np.zeros((2, 3)), dirs]  # (32, 3)
    gtab = gradient_table(bvals, bvecs=bvecs)
    e1 = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    evecs = np.stack([e1, np.array([-1.0, 1.0, 0.0]) / np.sqrt(2), np.array([0.0, 0.0, 1.0])], axis=1)  # columns
    sig_iso = single_tensor(gtab, S0=1000.0, evals=ISO, evecs=np.eye(3), snr=None)  # (32,)
    sig_aniso = single_tensor(gtab, S0=1000.0, evals=ANISO, evecs=evecs, snr=None)
    dwi = np.zeros((10, 10, 10, 32), dtype=np.float32)
    dwi[2:5, 2:8, 2:8] = sig_iso
    dwi[5:8, 2:8, 2:8] = sig_aniso
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, -12.0, -8.0]
    paths = {"dwi": root / "dwi.nii.gz", "bval": root / "dwi.bval", "bvec": root / "dwi.bvec", "mask": root / "mask.nii.gz"}
    nib.save(nib.Nifti1Image(dwi, affine), paths["dwi"])
    nib.save(nib.Nifti1Image(mask, affine), paths["mask"])
    np.savetxt(paths["bval"], bvals[None], fmt="%g")
    np.savetxt(paths["bvec"], bvecs.T if bvec_layout == "3xN" else bvecs, fmt="%.8f")
    return paths


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).get_fdata(), dtype=np.float64)


# ----------------------------------------------------------------------------------------- (1) real data
def test_small_64d_matches_an_independent_dipy_fit(tmp_path):
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    nii, bval, bvec = small_64d()
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dti", str(nii), "--bval", str(bval), "--bvec", str(bvec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{m}.nii.gz" for m in (*MAPS, "mask")] + ["run.json"])

    # The reference: dipy's own reader and defaults, nothing of ours.
    img = nib.load(nii)
    data = np.asarray(img.get_fdata())
    bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
    bvecs = np.nan_to_num(bvecs)  # small_64D stores its b0 vector as NaN
    gtab = gradient_table(bvals, bvecs=bvecs)
    _, mask = median_otsu(data, vol_idx=np.flatnonzero(bvals <= 50))
    fit = TensorModel(gtab).fit(data, mask=mask)
    assert mask.sum() > 100
    np.testing.assert_array_equal(load(out / "mask.nii.gz") > 0, mask)
    for name, ref in (("md", fit.md), ("ad", fit.ad), ("rd", fit.rd)):
        got = load(out / f"{name}.nii.gz")
        np.testing.assert_allclose(got[mask], ref[mask], rtol=0, atol=1e-6, err_msg=name)  # mm²/s
        assert not got[~mask].any(), name
        assert 1e-4 < np.median(got[mask]) < 4e-3, name  # brain diffusivities, mm²/s
    fa = load(out / "fa.nii.gz")
    np.testing.assert_allclose(fa[mask], np.nan_to_num(fit.fa[mask]), rtol=0, atol=1e-3)
    assert fa.min() >= 0 and fa.max() <= 1 and not fa[~mask].any()
    np.testing.assert_allclose(nib.load(out / "md.nii.gz").affine, img.affine, atol=1e-5)


# ----------------------------------------------------------------------------------------- (2) known tensors
def test_known_tensors_are_recovered(tmp_path):
    p = synthetic_dwi(tmp_path / "in")
    out = dti_file(p["dwi"], p["bval"], p["bvec"], tmp_path / "out", mask=p["mask"])
    maps = {m: load(out / f"{m}.nii.gz") for m in MAPS}
    mask = load(p["mask"]) > 0
    for region, evals in ((np.s_[2:5, 2:8, 2:8], ISO), (np.s_[5:8, 2:8, 2:8], ANISO)):
        want = expected(evals)
        for m in MAPS:
            tol = 1e-3 if m == "fa" else 1e-6  # FA unitless; diffusivities mm²/s (values ~1e-3, float32 maps)
            np.testing.assert_allclose(maps[m][region], want[m], rtol=0, atol=tol, err_msg=f"{m} {evals}")
    assert expected(ANISO)["fa"] > 0.7 and expected(ISO)["fa"] == 0
    for m in MAPS:
        assert not maps[m][~mask].any(), m


# ----------------------------------------------------------------------------------------- (3) bvec layouts
def test_bvec_layouts_3xn_and_nx3_give_the_same_maps(tmp_path):
    a = synthetic_dwi(tmp_path / "a", "3xN")
    b = synthetic_dwi(tmp_path / "b", "Nx3")
    assert np.loadtxt(a["bvec"]).shape == (3, 32) and np.loadtxt(b["bvec"]).shape == (32, 3)
    # the block's own mask: dipy's median_otsu (radius 4, 4 passes) erodes a 6^3 block in a 10^3 volume to
    # nothing with numpy 2.4 / scipy 1.17 (the automatic mask is tested on small_64D, a real DWI)
    out_a = dti_file(a["dwi"], a["bval"], a["bvec"], tmp_path / "out_a", mask=a["mask"])
    out_b = dti_file(b["dwi"], b["bval"], b["bvec"], tmp_path / "out_b", mask=b["mask"])
    for m in (*MAPS, "mask"):
        va, vb = load(out_a / f"{m}.nii.gz"), load(out_b / f"{m}.nii.gz")
        # the same numbers parsed from either layout: equal maps (a tolerance, not bytes: fits are float work)
        np.testing.assert_allclose(va, vb, rtol=0, atol=1e-6 if m == "fa" else 1e-9, err_msg=m)
    assert load(out_a / "mask.nii.gz").sum() > 0


# ----------------------------------------------------------------------------------------- (4) bad input
def _bad(root: Path, case: str) -> tuple[list[str], Path, str]:
    """Write the synthetic DWI with one defect; returns (CLI options, the file to name, message pattern)."""
    p = synthetic_dwi(root)
    opts = ["--bval", str(p["bval"]), "--bvec", str(p["bvec"])]
    bvals = np.loadtxt(p["bval"])
    bvecs = np.loadtxt(p["bvec"])  # (3, 32)
    if case == "bval_length":
        np.savetxt(p["bval"], bvals[None, :-1], fmt="%g")
        return opts, p["bval"], r"31 b-values but the DWI has 32 volumes"
    if case == "bvec_length":
        np.savetxt(p["bvec"], bvecs[:, :-2], fmt="%.8f")
        return opts, p["bvec"], r"30 b-vectors but the DWI has 32 volumes"
    if case == "3d":
        img = nib.load(p["dwi"])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), p["dwi"])
        return opts, p["dwi"], r"3D image .*expected a 4D DWI"
    if case == "no_b0":
        np.savetxt(p["bval"], np.where(bvals == 0, 1000.0, bvals)[None], fmt="%g")
        return opts, p["bval"], r"no b0 volume"
    if case == "bvec_norm":
        np.savetxt(p["bvec"], bvecs * 0.5, fmt="%.8f")
        return opts, p["bvec"], r"not unit length"
    if case == "mask_shape":
        nib.save(nib.Nifti1Image(np.ones((10, 10, 9), np.uint8), np.eye(4)), p["mask"])
        return [*opts, "--mask", str(p["mask"])], p["mask"], r"mask shape 10x10x9 differs from the DWI's 10x10x10"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["bval_length", "bvec_length", "3d", "no_b0", "bvec_norm", "mask_shape"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    opts, culprit, pattern = _bad(tmp_path / "in", case)
    before = tree_hash(tmp_path / "in")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dti", str(tmp_path / "in" / "dwi.nii.gz"), *opts, "--out", str(out)])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and str(culprit) in lines[0] and re.search(pattern, lines[0]), lines[0]
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".out.")]
    assert tree_hash(tmp_path / "in") == before


# ----------------------------------------------------------------------------------------- (5) folder mode
def test_folder_mode_writes_four_cohort_folders(tmp_path):
    nii, bval, bvec = small_64d()
    src = tmp_path / "dwi"
    # sub-01 (no session) at the top; sub-02's two sessions BIDS-nested, one spelled ses-<label> in the file
    layout = {"sub-01": src, "sub-02_ses-01": src / "sub-02" / "ses-01" / "dwi", "sub-02_ses-02": src / "sub-02"}
    for prefix, folder in layout.items():
        folder.mkdir(parents=True, exist_ok=True)
        img = nib.load(nii)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), folder / f"{prefix}_dwi.nii.gz")
        shutil.copy(bval, folder / f"{prefix}_dwi.bval")
        np.savetxt(folder / f"{prefix}_dwi.bvec", np.nan_to_num(np.loadtxt(bvec)).T, fmt="%.8f")  # 3xN here
    (src / "participants.tsv").write_text("participant_id\tsession_id\tsex\tage\tsite\n"
                                          "sub-01\tn/a\tF\t61\tA\nsub-02\tses-01\tM\t70\tB\nsub-02\t02\tM\t72\tB\n")
    before = tree_hash(src)
    out = tmp_path / "maps"
    res = CliRunner().invoke(app, ["dti", str(src), "--out", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    assert tree_hash(src) == before
    assert sorted(p.name for p in out.iterdir()) == sorted([*MAPS, "run.json"])
    single = dti_file(nii, bval, bvec, tmp_path / "single")
    for m in MAPS:
        cohort = read_cohort(out / m)
        assert list(cohort.table["participant_id"]) == ["sub-01", "sub-02", "sub-02"]
        assert list(cohort.table["sex"]) == ["F", "M", "M"] and list(cohort.table["site"]) == ["A", "B", "B"]
        names = [Path(p).name for p in cohort.table["path"]]
        assert names == [f"sub-01_{m}.nii.gz", f"sub-02_ses-01_{m}.nii.gz", f"sub-02_ses-02_{m}.nii.gz"]
        assert (out / m / "run.json").is_file()
        ref = load(single / f"{m}.nii.gz")
        for p in cohort.paths:  # same DWI, same maps (the bvec file's layout and NaN b0 row do not matter)
            np.testing.assert_allclose(load(p), ref, rtol=0, atol=1e-7, err_msg=str(p))


def test_folder_mode_missing_gradient_file_names_it(tmp_path):
    p = synthetic_dwi(tmp_path / "in")
    src = tmp_path / "in"
    p["dwi"].rename(src / "sub-01_dwi.nii.gz")
    p["bval"].rename(src / "sub-01_dwi.bval")
    (src / "participants.tsv").write_text("participant_id\nsub-01\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dti", str(src), "--out", str(out)])
    assert res.exit_code == 2 and "sub-01_dwi.bvec" in res.stderr and "file not found" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("case", ["folder_with_bval", "file_without_bvec", "out_not_empty"])
def test_usage_errors_exit_2(tmp_path, case):
    p = synthetic_dwi(tmp_path / "in")
    out = tmp_path / "out"
    if case == "folder_with_bval":
        args, culprit, pattern = [str(tmp_path / "in"), "--bval", str(p["bval"])], tmp_path / "in", "--bval apply to one"
    elif case == "file_without_bvec":
        args, culprit, pattern = [str(p["dwi"]), "--bval", str(p["bval"])], p["dwi"], "needs --bval and --bvec"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("x")
        args, culprit, pattern = [str(p["dwi"]), "--bval", str(p["bval"]), "--bvec", str(p["bvec"])], out, "not empty"
    res = CliRunner().invoke(app, ["dti", *args, "--out", str(out)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(culprit) in res.stderr and pattern in res.stderr, res.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == (["in", "out"] if case == "out_not_empty" else ["in"])
