"""Phantom FA (issue 22 item 3): range and background, tissue contrast, age effect, consistency with the
MD map of the same subject, lesions, the md/fa cohort folders, determinism and the CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.data.phantom import SITES, StudyEffects, draw_subjects, load_templates, make_phantom_cohort
from neurodit.data.phantom.fa import deviatoric, fa_from, tract_pattern
from neurodit.data.phantom.synthesize import synthesize_maps
from neurodit.errors import NeuroditError

VS = 5.0
STUDY = StudyEffects()


@pytest.fixture(scope="module")
def t5():
    return load_templates(VS)


@pytest.fixture(scope="module")
def camcan8(t5):
    """8 camcan subjects (study model, camcan site): (table, [(md, fa)])."""
    tab = draw_subjects("camcan", 8, seed=1, study=STUDY)
    return tab, [tuple(synthesize_maps(t5, r, study=STUDY, site=SITES["camcan"], maps=("md", "fa"))[0].values())
                 for _, r in tab.iterrows()]


def _pure(t):
    """Template voxels of (nearly) one tissue: (wm, gm, csf) boolean (D, H, W)."""
    return t.wm > 0.9, t.gm > 0.6, t.csf > 0.8


def test_fa_formula_round_trips_and_tract_pattern_is_fixed(t5):
    fa = np.array([0.0, 0.07, 0.17, 0.6, 0.9], np.float32)
    md = np.array([3e-3, 3e-3, 0.85e-3, 0.7e-3, 0.7e-3], np.float32)
    assert np.allclose(fa_from(deviatoric(fa, md), md), fa, atol=1e-6)
    assert fa_from(np.zeros(2, np.float32), np.zeros(2, np.float32)).tolist() == [0.0, 0.0]
    p = tract_pattern(t5)
    assert p is tract_pattern(t5) and not p.flags.writeable and np.abs(p).max() <= 1.0
    wm = t5.wm > 0.9
    assert 0.2 < p[wm].std() < 0.8  # a pattern, not a constant


def test_fa_range_background_and_tissue_order(t5, camcan8):
    wm, gm, csf = _pure(t5)
    for md, fa in camcan8[1]:
        assert fa.dtype == np.float32 and fa.shape == md.shape
        assert fa.min() >= 0.0 and fa.max() <= 1.0
        assert (fa[md == 0] == 0).all() and (fa[md > 0] > 0).mean() > 0.99  # one brain outline
        assert fa[wm].mean() > fa[gm].mean() + 0.15 > fa[csf].mean() + 0.2
        assert 0.35 < fa[wm].mean() < 0.6 and np.percentile(fa[wm], 95) > 0.5
        assert 0.12 < fa[gm].mean() < 0.22 and 0.04 < fa[csf].mean() < 0.12


def test_fa_falls_with_age(t5, camcan8):
    tab, vols = camcan8
    wm = _pure(t5)[0]
    r = np.corrcoef(tab["age"], [fa[wm].mean() for _, fa in vols])[0, 1]
    assert r < -0.5
    # function level: the same latent subject at 30 and 80 years (only FA reads the age from the row)
    row = tab.iloc[0].copy()
    fa_at = {}
    for age in (30.0, 80.0):
        row["age"] = age
        fa_at[age] = synthesize_maps(t5, row, study=STUDY, site=SITES["none"], noise=False, maps=("fa",))[0]["fa"]
    drop = fa_at[30.0][wm].mean() - fa_at[80.0][wm].mean()
    assert 0.08 < drop < 0.14  # 50 y x 0.0025 = 0.125 in pure WM, a little less with partial volume


def test_md_and_fa_agree(camcan8):
    for md, fa in camcan8[1]:
        free_water = md > 2.2e-3  # CSF-like MD (> 2/3 of the way from tissue to free water): FA of CSF
        assert free_water.sum() >= 40 and fa[free_water].max() < 0.15
        tissue = (md > 0.5e-3) & (md < 0.9e-3)
        assert np.median(fa[tissue]) > 2 * np.median(fa[free_water])


def test_lesions_raise_md_and_lower_fa(t5):
    row = draw_subjects("adni", 2, seed=4, study=STUDY).iloc[0].copy()
    kw = {"study": STUDY, "site": SITES["none"], "noise": False, "maps": ("md", "fa")}
    row["n_wmh"], row["n_lacunes"] = 0, 0
    base = synthesize_maps(t5, row, **kw)[0]
    row["n_wmh"] = 40
    les = synthesize_maps(t5, row, **kw)[0]
    hit = (les["md"] > 1.1 * base["md"]) & (base["fa"] > 0.3)
    assert hit.sum() > 10
    assert (les["fa"][hit] < base["fa"][hit]).mean() > 0.95
    assert np.median(les["fa"][hit] / base["fa"][hit]) < 0.9


def test_md_fa_folders_same_bytes_and_md_unchanged(tmp_path):
    kw = {"seed": 3, "voxel_size": 6.0}
    both = make_phantom_cohort("adni", 4, tmp_path / "both", maps=("md", "fa"), **kw)
    again = make_phantom_cohort("adni", 4, tmp_path / "again", maps=["md", "fa"], **kw)
    md_only = make_phantom_cohort("adni", 4, tmp_path / "md", **kw)
    assert sorted(p.name for p in both.iterdir()) == ["fa", "md"]
    for m in ("md", "fa"):
        names = sorted(p.name for p in (both / m).iterdir())
        assert names == ["map.json", "participants.tsv", "phantom.json", "phantom_latents.tsv", "run.json"] + [
            f"sub-000{i}_{m}.nii.gz" for i in range(1, 5)]
        for name in names:
            if name != "run.json":
                assert (both / m / name).read_bytes() == (again / m / name).read_bytes(), (m, name)
        assert json.loads((both / m / "map.json").read_text()) == {"map": m}
        info = json.loads((both / m / "phantom.json").read_text())
        assert info["maps"] == ["md", "fa"] and info["map"] == m and info["unit"] == ("mm2/s" if m == "md" else "1")
        assert "wm_fa" in (both / m / "phantom_latents.tsv").read_text().splitlines()[0].split("\t")
    assert (both / "md" / "participants.tsv").read_bytes() == (md_only / "participants.tsv").read_bytes()
    assert not (md_only / "map.json").exists()  # the default layout is the earlier one
    # the MD volumes are those of the MD-only cohort, voxel for voxel; both folders read as cohorts
    md_c, fa_c = read_cohort(both / "md"), read_cohort(both / "fa")
    assert (md_c.map, fa_c.map) == ("md", "fa")
    vols, _ = load_volumes(md_c)
    ref, _ = load_volumes(read_cohort(md_only))
    assert np.array_equal(vols, ref)
    fa = np.stack([np.asarray(nib.load(p).dataobj) for p in fa_c.paths])
    assert fa.dtype == np.float32 and 0 <= fa.min() and fa.max() <= 1 and ((fa > 0) == (vols > 0)).all()


def test_bad_maps_raise_and_cli_maps(tmp_path):
    for maps in (("md", "t1"), (), ("fa", "fa")):
        with pytest.raises(NeuroditError, match="maps"):
            make_phantom_cohort("camcan", 2, tmp_path / "x", voxel_size=8.0, maps=maps)
    assert not (tmp_path / "x").exists()
    runner = CliRunner()
    res = runner.invoke(app, ["phantom", "--cohort", "camcan", "--n", "2", "--out", str(tmp_path / "p"),
                              "--voxel-size", "8", "--maps", "md,fa"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "fa" / "sub-0002_fa.nii.gz").is_file()
    assert (tmp_path / "p" / "md" / "sub-0002_md.nii.gz").is_file()
    res = runner.invoke(app, ["phantom", "--cohort", "camcan", "--n", "2", "--out", str(tmp_path / "q"),
                              "--voxel-size", "8", "--maps", "md,t1"])
    assert res.exit_code == 2 and "--maps" in res.output
