"""The ``study`` phantom model (issue 11): lesions that rise with age and AD severity, non-linear
anatomy, site effects measurable at their set sizes, and ``classic`` reproducing the earlier phantom
(tables exactly, volumes within a float tolerance that holds on every CPU kind)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_nifti_3d
from neurodit.data.phantom import (
    SITES,
    SiteEffects,
    StudyEffects,
    apply_site,
    draw_subjects,
    load_templates,
    make_phantom_cohort,
    resolve_site,
    synthesize_subject,
    synthesize_with_lesions,
)
from neurodit.errors import NeuroditError

STUDY = StudyEffects()

# What the phantom wrote before issue 11 (the classic model), in tests/data/fixtures/classic_phantom/: the
# tables as written, and every volume as a float32 array (volumes.npz, key "<cohort>_<participant>").
# Written by `make_phantom_cohort(cohort, 3, out, seed, voxel_size, include_mci)` of commit de28d1b^ (the
# code before the study model) on an AVX-512 machine, 2026-12-05; there the current classic model writes
# the same bytes. Volumes are compared as arrays with a tolerance, never as hashes of
# compressed files: float results differ in their last bits between CPU kinds (AVX2 vs AVX-512) and
# gzip streams between zlib builds, while the arrays agree far inside the tolerance below.
CLASSIC = Path(__file__).parent / "fixtures" / "classic_phantom"
CLASSIC_RUNS = {"camcan": (7, 8.0, False), "adni": (9, 6.0, True)}  # cohort -> (seed, voxel mm, mci)
# MD is ~1e-3 mm²/s: rtol 1e-5 is ~100 float32 ulps, atol 1e-9 mm²/s covers voxels near the 0 background.
VOLUME_RTOL, VOLUME_ATOL = 1e-5, 1e-9


def _assert_json_close(got, want, where: str):
    """Equal structure and strings; floats within 1e-9 relative (they pass through printing)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _assert_json_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_json_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9), where
    else:
        assert got == want, where


@pytest.mark.parametrize("cohort", list(CLASSIC_RUNS))
def test_classic_reproduces_the_earlier_phantom(tmp_path, cohort):
    seed, vs, mci = CLASSIC_RUNS[cohort]
    out = make_phantom_cohort(cohort, 3, tmp_path / "c", seed=seed, voxel_size=vs, include_mci=mci,
                              effects_model="classic")
    ref = CLASSIC / cohort
    # labels and ages are exact (integer draws, fixed formatting): the table's text must not change
    assert (out / "participants.tsv").read_text() == (ref / "participants.tsv").read_text()
    lat, lat_ref = (pd.read_csv(d / "phantom_latents.tsv", sep="\t") for d in (out, ref))
    pd.testing.assert_frame_equal(lat, lat_ref, check_exact=False, rtol=1e-5)
    _assert_json_close(json.loads((out / "phantom.json").read_text()),
                       json.loads((ref / "phantom.json").read_text()), "phantom.json")
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert written == ["sub-0001.nii.gz", "sub-0002.nii.gz", "sub-0003.nii.gz"]
    with np.load(CLASSIC / "volumes.npz") as arrays:
        for name in written:
            got = load_nifti_3d(out / name, canonical=False).data
            want = arrays[f"{cohort}_{name.removesuffix('.nii.gz')}"]
            assert got.shape == want.shape and got.dtype == np.float32, name
            assert np.array_equal(got == 0, want == 0), f"{name}: background voxels moved"
            np.testing.assert_allclose(got, want, rtol=VOLUME_RTOL, atol=VOLUME_ATOL, err_msg=name)
            assert float(want.max()) > 2e-3  # the reference holds CSF-like MD, not an empty volume


def test_study_is_the_default_same_seed_same_bytes_and_records_site(tmp_path):
    a = make_phantom_cohort("adni", 4, tmp_path / "a", seed=5, voxel_size=8.0)
    b = make_phantom_cohort("adni", 4, tmp_path / "b", seed=5, voxel_size=8.0, effects_model="study")
    c = make_phantom_cohort("adni", 4, tmp_path / "c", seed=5, voxel_size=8.0, effects_model="classic")
    for p in sorted(a.iterdir()):
        if p.name != "run.json":
            assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    assert (a / "sub-0001.nii.gz").read_bytes() != (c / "sub-0001.nii.gz").read_bytes()
    # labels and the classic latents are shared by both models (same subjects, more effects)
    assert (a / "participants.tsv").read_bytes() == (c / "participants.tsv").read_bytes()
    lat, lat_c = (pd.read_csv(x / "phantom_latents.tsv", sep="\t") for x in (a, c))
    pd.testing.assert_frame_equal(lat[lat_c.columns], lat_c)
    for col in ("n_wmh", "wmh_ml", "n_lacunes", "lacune_ml", "vent_asym", "sulcal"):
        assert col in lat.columns, col
    cfg = json.loads((a / "phantom.json").read_text())
    assert cfg["effects_model"] == "study" and cfg["study"]["wmh_md_hi"] == 0.5
    assert cfg["site"] == {"name": "adni", "md_scale": 1.05, "noise_sd": 0.05, "blur_fwhm_mm": 5.0, "bias_sd": 0.04}
    assert "site" not in json.loads((c / "phantom.json").read_text())
    cam = make_phantom_cohort("camcan", 2, tmp_path / "d", seed=5, voxel_size=8.0, site="adni")
    assert json.loads((cam / "phantom.json").read_text())["site"]["name"] == "adni"


def test_bad_model_or_site_raises_and_cli_flags(tmp_path):
    with pytest.raises(NeuroditError, match="effects model 'fancy'"):
        make_phantom_cohort("camcan", 2, tmp_path / "x", effects_model="fancy")
    with pytest.raises(NeuroditError, match="unknown site 'mars'"):
        make_phantom_cohort("camcan", 2, tmp_path / "x", site="mars")
    with pytest.raises(NeuroditError, match="study effects model only"):
        make_phantom_cohort("camcan", 2, tmp_path / "x", site="adni", effects_model="classic")
    assert not (tmp_path / "x").exists()
    assert resolve_site(None, "camcan") is SITES["camcan"] and resolve_site("none", "adni") is SITES["none"]
    runner = CliRunner()
    res = runner.invoke(app, ["phantom", "--cohort", "camcan", "--n", "2", "--out", str(tmp_path / "p"),
                              "--voxel-size", "8", "--effects", "classic"])
    assert res.exit_code == 0, res.output
    assert "site" not in json.loads((tmp_path / "p" / "phantom.json").read_text())
    res = runner.invoke(app, ["phantom", "--cohort", "adni", "--n", "2", "--out", str(tmp_path / "q"),
                              "--voxel-size", "8", "--site", "camcan"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "q" / "phantom.json").read_text())["site"]["name"] == "camcan"
    res = runner.invoke(app, ["phantom", "--cohort", "adni", "--n", "2", "--out", str(tmp_path / "r"),
                              "--site", "mars"])
    assert res.exit_code == 2 and "unknown site 'mars'" in res.output


# --------------------------------------------------------------------------- lesions
@pytest.fixture(scope="module")
def t8():
    return load_templates(8.0)


def _lesion_table(t, cohort, n, seed):
    tab = draw_subjects(cohort, n, seed=seed, study=STUDY)
    info = [synthesize_with_lesions(t, r, study=STUDY, site=SITES["none"], noise=False)[1]
            for _, r in tab.iterrows()]
    return pd.concat([tab, pd.DataFrame(info, index=tab.index)], axis=1)


def test_lesion_load_rises_with_age(t8):
    tab = _lesion_table(t8, "camcan", 200, seed=21)
    rho = stats.spearmanr(tab.age, tab.wmh_ml)[0]
    assert rho > 0.3, rho
    assert stats.spearmanr(tab.age, tab.n_wmh)[0] > 0.3
    assert stats.spearmanr(tab.age, tab.n_lacunes)[0] > 0.2
    old, young = tab[tab.age > 70], tab[tab.age < 35]
    assert old.wmh_ml.mean() > 3 * young.wmh_ml.mean()
    # Poisson-like counts: variance close to the mean within an age band
    band = tab[(tab.age > 40) & (tab.age < 60)].n_wmh
    assert 0.5 < band.var() / band.mean() < 2.0


def test_lesion_load_rises_with_ad_severity(t8):
    tab = _lesion_table(t8, "adni", 200, seed=22)
    ad, cn = tab[tab.diagnosis == "AD"], tab[tab.diagnosis == "CN"]
    assert ad.wmh_ml.mean() > 1.2 * cn.wmh_ml.mean()
    assert stats.mannwhitneyu(ad.n_wmh, cn.n_wmh, alternative="greater").pvalue < 0.01
    sev = np.clip((tab.sev_h + tab.sev_v) / 2, 0, None)
    assert stats.spearmanr(sev, tab.n_wmh)[0] > 0.2
    assert abs(ad.age.mean() - cn.age.mean()) < 5  # not an age confound


def test_ad_effects_are_strong_enough_to_learn(t8):
    # the sizes that keep AD vs CN learnable despite the fine warp (docs/PHANTOM.md, demo targets):
    # hippocampal ROI MD (+45 % MD and 0.6 s_h atrophy to CSF) and diffuse WM MD (+20 % s), 40 subjects
    tab = draw_subjects("adni", 40, seed=5, study=STUDY)
    vols = np.stack([synthesize_subject(t8, r, study=STUDY, site=SITES["none"], noise=False)
                     for _, r in tab.iterrows()])
    ad = (tab.diagnosis == "AD").to_numpy()

    def cohen_d(x):
        return (x[ad].mean() - x[~ad].mean()) / np.sqrt((x[ad].var() + x[~ad].var()) / 2)

    hip, wm = vols[:, t8.hippocampus > 0.5].mean(1), vols[:, t8.wm > 0.8].mean(1)
    assert cohen_d(hip) > 2.0 and hip[ad].mean() > 1.3 * hip[~ad].mean()  # measured d 2.8, +53 %
    assert cohen_d(wm) > 1.5 and wm[ad].mean() > 1.08 * wm[~ad].mean()    # measured d 2.8, +12 %


def test_lesion_voxels_have_raised_md_and_lacunes_are_csf_like():
    t = load_templates(2.0)  # lesions of 4-16 mm: at 2 mm their cores fill whole voxels
    row = draw_subjects("camcan", 1, seed=3, study=STUDY).iloc[0].copy()
    row["n_wmh"], row["n_lacunes"], row["age"] = 12, 0, 80.0
    kw = dict(study=STUDY, site=SITES["none"], noise=False)
    with_l, info = synthesize_with_lesions(t, row, **kw)
    row0 = row.copy()
    row0["n_wmh"] = 0
    without = synthesize_subject(t, row0, **kw)  # same anatomy: lesions have their own stream
    assert info["wmh_ml"] > 1.0
    brain = without > 0
    ratio = np.where(brain, with_l / np.where(brain, without, 1), 1.0)
    lesion = ratio > 1.05
    assert lesion.sum() * 0.008 > 0.5 * info["wmh_ml"]  # ml: most of the load is visible
    assert ratio.max() <= 1.5 + 1e-4  # MD +20-50 % at most
    assert ratio.max() > 1.2 and np.percentile(ratio[lesion], 75) > 1.12
    # WMH only raise MD, and only locally (the rest of the brain is the same subject)
    assert ratio.min() >= 1 - 1e-5 and (ratio[brain] > 1.001).mean() < 0.05
    # lesions sit in white matter (the template's WM fraction, before the warp moves them by mm)
    assert np.median(t.wm[lesion]) > 0.5
    # lacunes: small CSF-filled cavities -> MD towards 3e-3 at their centres
    row0["n_lacunes"] = 4
    lac, info = synthesize_with_lesions(t, row0, **kw)
    assert info["lacune_ml"] > 0.1
    assert (lac - without).max() > 0.5e-3  # mm²/s: far above the +50 % a WMH can add to WM


# --------------------------------------------------------------------------- anatomy
def test_non_linear_anatomy_sulcal_widening_and_ventricle_shape():
    t = load_templates(6.0)
    base = draw_subjects("camcan", 1, seed=4, study=STUDY).iloc[0].copy()
    base["n_wmh"] = base["n_lacunes"] = 0
    kw = dict(study=STUDY, site=SITES["none"], noise=False)

    def csf_ml(vol, where):
        return float(np.clip((vol[where] - 0.9e-3) / 2.1e-3, 0, 1).sum() * 0.216)

    cortex = t.gm > 0.3
    young, old = base.copy(), base.copy()
    young["sulcal"], old["sulcal"] = 0.0, 0.8
    no_warp = dataclasses.replace(STUDY, warp_fine_sd_mm=0.0)
    a = synthesize_subject(t, young, deform=False, **kw)
    b = synthesize_subject(t, old, deform=False, **kw)
    assert csf_ml(b, cortex) > 1.1 * csf_ml(a, cortex)
    # the second (16 mm) deformation scale moves structures by mm: a visible, local difference
    c = synthesize_subject(t, base, **kw)
    d = synthesize_subject(t, base, **{**kw, "study": no_warp})
    diff = np.abs(c - d)
    assert diff.max() > 1e-3 and (diff > 1e-4).mean() > 0.05
    # ventricle shape latents vary per subject and the asymmetry shows up left vs right
    tab = draw_subjects("camcan", 50, seed=4, study=STUDY)
    assert tab.vent_asym.std() > 0.2 and tab.vent_wx.std() > 0.15 and tab.vent_dy.std() > 2.5
    left, right = base.copy(), base.copy()
    left["vent_asym"], right["vent_asym"], left["alpha"], right["alpha"] = -0.4, 0.4, 0.4, 0.4
    vl = synthesize_subject(t, left, deform=False, **kw)
    vr = synthesize_subject(t, right, deform=False, **kw)
    x = t.axes_mm[0]
    centre = (np.abs(t.axes_mm[1][None, :, None] + 15) < 30) & (np.abs(t.axes_mm[2][None, None, :] - 13) < 20)
    lh, rh = centre & (x[:, None, None] < 0), centre & (x[:, None, None] > 0)
    # the left-expanded subject has more CSF on the left and less on the right than its mirror
    assert csf_ml(vl, lh) - csf_ml(vr, lh) > 0.1 and csf_ml(vr, rh) - csf_ml(vl, rh) > 0.1  # ml


# --------------------------------------------------------------------------- site effects
def _ball(n=40, r=15):
    ax = np.arange(n) - n / 2
    r2 = ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2
    return np.where(r2 < r * r, np.float32(0.8e-3), np.float32(0.0))


def test_site_md_scale_and_noise_measured_at_set_size():
    vol = _ball()
    brain = vol > 0
    rng = np.random.default_rng(0)
    out = apply_site(vol, SiteEffects("s", md_scale=1.05, noise_sd=0.0), 2.0, rng)
    np.testing.assert_allclose(out[brain] / vol[brain], 1.05, rtol=1e-6)  # exact: a global gain
    for sd in (0.03, 0.05):
        out = apply_site(vol, SiteEffects("s", noise_sd=sd), 2.0, rng)
        assert np.std(out[brain] / vol[brain] - 1) == pytest.approx(sd, rel=0.03)  # ~14k voxels
        assert np.all(out[~brain] == 0)


def test_site_blur_fwhm_measured_at_set_size():
    # impulse response inside a uniform support: its second moment gives sigma = FWHM / 2.355
    vol = np.zeros((41, 41, 41), np.float32)
    vol[5:-5, 5:-5, 5:-5] = 1e-9
    vol[20, 20, 20] = 1.0
    for fwhm in (4.0, 6.0):
        out = apply_site(vol, SiteEffects("s", noise_sd=0.0, blur_fwhm_mm=fwhm), 1.0, np.random.default_rng(0))
        w = out[20, :, 20] - 1e-9
        x = np.arange(41) - 20
        sigma = np.sqrt((w * x * x).sum() / w.sum())
        assert sigma * 2.3548 == pytest.approx(fwhm, rel=0.05)
        assert out.sum() == pytest.approx(vol.sum(), rel=0.01)  # normalised: no signal lost


def test_site_bias_field_measured_at_set_size_and_smooth():
    vol = _ball(48, 22)
    brain = vol > 0
    sds = []
    for k in range(20):
        out = apply_site(vol, SiteEffects("s", noise_sd=0.0, bias_sd=0.04), 2.0, np.random.default_rng(k))
        logb = np.log(out[brain] / vol[brain])
        sds.append(np.sqrt(np.mean(logb**2)))
        # smooth: neighbouring voxels (2 mm apart) differ by far less than the field's spread
        b = np.log(np.where(brain, out / np.where(brain, vol, 1), 1))
        assert np.abs(np.diff(b, axis=0))[brain[1:] & brain[:-1]].max() < 0.5 * np.abs(logb).max()
    assert np.mean(sds) == pytest.approx(0.04, rel=0.2)


def test_camcan_and_adni_sites_differ_on_phantoms():
    t = load_templates(6.0)
    row = draw_subjects("adni", 1, seed=9, study=STUDY).iloc[0]
    clean = synthesize_subject(t, row, study=STUDY, site=SITES["none"], noise=False)
    core = ndimage.binary_erosion(clean > 0, iterations=2)
    got = {}
    for name in ("camcan", "adni"):
        s = SITES[name]
        scale_only = synthesize_subject(t, row, study=STUDY, noise=False,
                                        site=SiteEffects(name, md_scale=s.md_scale))
        noisy = synthesize_subject(t, row, study=STUDY, site=SiteEffects(name, noise_sd=s.noise_sd))
        got[name] = (np.median(scale_only[core] / clean[core]), np.std(noisy[core] / clean[core] - 1))
        assert got[name][0] == pytest.approx(s.md_scale, rel=1e-4)
        assert got[name][1] == pytest.approx(s.noise_sd, rel=0.1)
    assert got["adni"][0] > got["camcan"][0] and got["adni"][1] > got["camcan"][1]
    assert SITES["adni"].blur_fwhm_mm > SITES["camcan"].blur_fwhm_mm
    assert SITES["adni"].bias_sd > SITES["camcan"].bias_sd
