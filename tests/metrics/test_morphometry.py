"""Morphometry: tissue fractions on volumes built with known counts, and the age/sex effects of phantoms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurodit.errors import NeuroditError
from neurodit.metrics.morphometry import MEASURES, morphometry_metrics, tissue_fractions


def _known(n_brain: int, n_wm: int, n_csf: int, shape=(16, 16, 16)) -> np.ndarray:
    """One volume (mm²/s) with exactly n_wm WM-like, n_csf CSF-like and the rest GM-like brain voxels."""
    v = np.zeros(int(np.prod(shape)), np.float32)
    v[:n_brain] = 0.85e-3
    v[:n_wm] = 0.7e-3
    v[n_wm:n_wm + n_csf] = 3.0e-3
    v[n_brain:n_brain + 5] = 5e-5  # resampling halo below the brain threshold: not brain
    return v.reshape(shape)


def test_tissue_fractions_count_voxels_exactly():
    vols = np.stack([_known(2000, 500, 100), _known(3000, 600, 300)])
    f = tissue_fractions(vols, None, voxel_volume_ml=0.008)
    np.testing.assert_allclose(f["wm_fraction"], [0.25, 0.2])
    np.testing.assert_allclose(f["csf_fraction"], [0.05, 0.1])
    np.testing.assert_allclose(f["gm_fraction"], [0.7, 0.7])
    np.testing.assert_allclose(f["brain_volume_ml"], [16.0, 24.0])
    mask = np.zeros((16, 16, 16), bool)
    mask.reshape(-1)[:1000] = True  # only the first 1000 voxels count
    np.testing.assert_allclose(tissue_fractions(vols, mask, 0.008)["wm_fraction"], [0.5, 0.6])


def test_known_csf_age_slope_and_sex_difference_recovered():
    # CSF voxels = 100 + 2 per year of age out of 4000 brain voxels: slope 2/4000 per year = 0.005 per decade;
    # men get 400 more brain voxels (x 0.008 ml = 3.2 ml)
    ages = np.arange(20, 80, 3, dtype=float)
    sex = np.array(["F", "M"] * (len(ages) // 2))
    vols = np.stack([_known(4000 + 400 * (s == "M"), 800, 100 + 2 * int(a), shape=(20, 20, 20))
                     for a, s in zip(ages, sex, strict=True)])
    # the same CSF count per age, as a fraction of the (sex-dependent) brain: only F to keep it exact
    f_only = sex == "F"
    table = pd.DataFrame({"sex": sex, "age": ages})
    out = morphometry_metrics(vols[f_only], vols, None, 0.008, table[f_only].reset_index(drop=True), table)
    eff = out["effects"]
    assert eff["csf_fraction_age_slope"]["real"] == pytest.approx(0.005, rel=1e-9)
    assert eff["csf_fraction_age_slope"]["unit"] == "per decade"
    assert eff["brain_volume_sex_diff_ml"]["real"] is None  # the real side has one sex only
    assert eff["brain_volume_sex_diff_ml"]["synthetic"] == pytest.approx(3.2, rel=1e-9)
    # no spread within a sex: the interval collapses onto the difference
    assert eff["brain_volume_sex_diff_ml"]["synthetic_ci95"] == pytest.approx([3.2, 3.2], rel=1e-9)


def test_identical_sets_have_zero_wasserstein():
    vols = np.stack([_known(2000 + 37 * i, 400 + 11 * i, 50 + 7 * i) for i in range(8)])
    out = morphometry_metrics(vols, vols.copy(), None, 0.008)
    for k in MEASURES:
        assert out["measures"][k]["wasserstein"] == 0.0
        assert out["measures"][k]["ks_p"] == pytest.approx(1.0)
        assert out["measures"][k]["real_mean"] == out["measures"][k]["syn_mean"]
    assert out["effects"]["csf_fraction_age_slope"] == {"real": None, "synthetic": None, "real_ci95": None,
                                                        "synthetic_ci95": None, "unit": "per decade"}
    assert "distributed like the real ones" in out["verdict"]


def test_shifted_csf_is_detected():
    real = np.stack([_known(3000, 600, 100 + 5 * i) for i in range(12)])
    syn = np.stack([_known(3000, 600, 400 + 5 * i) for i in range(12)])  # 10 % more CSF
    out = morphometry_metrics(real, syn, None, 0.008)
    m = out["measures"]["csf_fraction"]
    assert m["wasserstein"] == pytest.approx(0.1, rel=1e-9)
    assert m["ks_p"] < 1e-4
    assert "CSF-like fraction" in out["verdict"] and "higher" in out["verdict"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Two 40-subject camcan phantoms at 6 mm: default effects, and no age effect on CSF (atrophy and
    ventricular expansion off)."""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.phantom import PhantomEffects, StudyEffects, make_phantom_cohort

    out = {}
    root = tmp_path_factory.mktemp("morpho")
    # no_age: every age effect on CSF off (classic atrophy and ventricles, study sulci and lacunes)
    no_age = (PhantomEffects(atrophy_age=0.0, vent_age=0.0), StudyEffects(sulcal_age=0.0, lacune_age=0.0))
    for name, (eff, study) in (("default", (PhantomEffects(), None)), ("no_age", no_age)):
        folder = make_phantom_cohort("camcan", 40, root / name, seed=0, voxel_size=6.0, effects=eff, study=study)
        cohort = read_cohort(folder)
        vols, grid = load_volumes(cohort)
        latents = pd.read_csv(folder / "phantom_latents.tsv", sep="\t")
        out[name] = (vols, cohort.table, latents, float(np.prod(grid.voxel_size)) / 1000.0)
    return out


def test_phantom_csf_age_effect_recovered(phantoms):
    vols, table, _, vox_ml = phantoms["default"]
    res = morphometry_metrics(vols[:20], vols[20:], None, vox_ml, table.iloc[:20], table.iloc[20:])
    eff = res["effects"]["csf_fraction_age_slope"]
    for side in ("real", "synthetic"):  # both halves of one phantom: CSF grows with age, CI above 0
        assert eff[f"{side}_ci95"][0] > 0
    assert 0.5 < eff["synthetic"] / eff["real"] < 2.0
    assert "as fast as in real brains" in res["verdict"]
    # without the phantom's atrophy and ventricle growth the slope vanishes (CI contains 0)
    v0, t0, _, _ = phantoms["no_age"]
    none = morphometry_metrics(v0, v0, None, vox_ml, t0, t0)["effects"]["csf_fraction_age_slope"]
    full = morphometry_metrics(vols, vols, None, vox_ml, table, table)["effects"]["csf_fraction_age_slope"]
    assert none["real_ci95"][0] < 0 < none["real_ci95"][1]
    assert full["real"] > 5 * abs(none["real"])


def test_phantom_brain_volume_follows_head_size_and_sex(phantoms):
    vols, table, latents, vox_ml = phantoms["default"]
    f = tissue_fractions(vols, None, vox_ml)
    # brain volume tracks the phantom's hidden head scale (volume ~ scale^3)
    assert np.corrcoef(f["brain_volume_ml"], latents["scale"] ** 3)[0, 1] > 0.9
    res = morphometry_metrics(vols, vols, None, vox_ml, table, None)
    diff = res["effects"]["brain_volume_sex_diff_ml"]
    assert diff["real"] > 0 and diff["real_ci95"][0] > 0  # M - F = +4 % linear head size
    assert diff["synthetic"] is None
    assert "no synthetic ages" in res["verdict"]


def test_bad_inputs_raise():
    vols = np.stack([_known(2000, 500, 100)] * 3)
    with pytest.raises(NeuroditError, match="mask shape"):
        tissue_fractions(vols, np.ones((4, 4, 4), bool), 0.008)
    with pytest.raises(NeuroditError, match="no brain voxel"):
        tissue_fractions(np.zeros((2, 8, 8, 8)), None, 0.008)
    with pytest.raises(NeuroditError, match="rows"):
        morphometry_metrics(vols, vols, None, 0.008, pd.DataFrame({"age": [20.0, 30.0]}))
