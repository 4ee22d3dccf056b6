"""Phantom cohorts: format, determinism, tissue values, and that every documented effect is there
with the right sign and rough size (at 6 mm, i.e. what a 32^3 demo grid sees)."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.phantom import (
    TISSUE_MD,
    PhantomEffects,
    draw_subjects,
    load_templates,
    make_phantom_cohort,
    synthesize_subject,
)
from neurodit.errors import NeuroditError

VS = 6.0  # mm: the demo trains on 32^3 (~6 mm) grids, so effects must be visible here


def cohen_d(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)


@pytest.fixture(scope="module")
def t6():
    return load_templates(VS)


def _measures(t, vols):
    """Per-subject summaries: brain volume (ml), WM MD, central CSF volume (ml), hippocampal MD,
    sex-pattern ratio (MD in WM where the pattern is + / where it is -)."""
    ax = np.meshgrid(*t.axes_mm, indexing="ij")
    centre = (abs(ax[0]) < 30) & (ax[1] > -50) & (ax[1] < 35) & (ax[2] > -5) & (ax[2] < 40)
    wm_core = t.wm > 0.8
    pos, neg = wm_core & (t.sex_pattern > 0.3), wm_core & (t.sex_pattern < -0.3)
    hip = t.hippocampus > 0.5
    vox_ml = t.voxel_size**3 / 1000
    return pd.DataFrame({
        "brain_ml": (vols > 1e-4).sum((1, 2, 3)) * vox_ml,
        "wm_md": [np.median(v[wm_core]) for v in vols],
        # CSF-equivalent volume: fraction of the way from tissue (0.9e-3) to CSF (3.0e-3) MD
        "csf_ml": np.clip((vols[:, centre] - 0.9e-3) / 2.1e-3, 0, 1).sum(1) * vox_ml,
        "hip_md": vols[:, hip].mean(1),
        "pattern": [np.median(v[pos]) / np.median(v[neg]) for v in vols],
    })


@pytest.fixture(scope="module")
def camcan(t6):
    tab = draw_subjects("camcan", 60, seed=11)
    vols = np.stack([synthesize_subject(t6, r) for _, r in tab.iterrows()])
    return tab, _measures(t6, vols), vols


@pytest.fixture(scope="module")
def adni(t6):
    tab = draw_subjects("adni", 60, seed=12)
    vols = np.stack([synthesize_subject(t6, r) for _, r in tab.iterrows()])
    return tab, _measures(t6, vols), vols


def test_cohort_folder_is_input_format_and_same_seed_gives_same_bytes(tmp_path):
    a = make_phantom_cohort("adni", 4, tmp_path / "a", seed=5, voxel_size=8.0)
    b = make_phantom_cohort("adni", 4, tmp_path / "b", seed=5, voxel_size=8.0)
    c = make_phantom_cohort("adni", 4, tmp_path / "c", seed=6, voxel_size=8.0)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["participants.tsv", "phantom.json", "phantom_latents.tsv", "run.json",
                     "sub-0001.nii.gz", "sub-0002.nii.gz", "sub-0003.nii.gz", "sub-0004.nii.gz"]
    for name in names:
        if name != "run.json":  # run.json records time and versions
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "sub-0001.nii.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert (a / "sub-0001.nii.gz").read_bytes() != (c / "sub-0001.nii.gz").read_bytes()
    tab = pd.read_csv(a / "participants.tsv", sep="\t")
    assert list(tab.columns) == ["participant_id", "sex", "age", "diagnosis"]
    assert list(tab.participant_id) == ["sub-0001", "sub-0002", "sub-0003", "sub-0004"]
    assert sorted(tab.sex) == ["F", "F", "M", "M"] and sorted(tab.diagnosis) == ["AD", "AD", "CN", "CN"]
    img = nib.load(str(a / "sub-0002.nii.gz"))
    vol = np.asarray(img.dataobj)
    assert vol.dtype == np.float32 and vol.ndim == 3
    assert np.allclose(np.diag(img.affine), [8, 8, 8, 1]) and np.allclose(img.affine[:3, 3], [-98, -134, -72])
    assert img.header.get_sform(coded=True)[1] == 4  # MNI152
    assert vol.min() == 0.0 and vol[0, 0, 0] == 0.0 and 2.0e-3 < vol.max() < 4.0e-3  # mm²/s


def test_existing_output_is_refused_and_bad_arguments_raise(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(NeuroditError, match="not empty"):
        make_phantom_cohort("camcan", 2, out, voxel_size=8.0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    for kw in ({"cohort": "ukb", "n": 2}, {"cohort": "camcan", "n": 0},
               {"cohort": "camcan", "n": 2, "include_mci": True}):
        with pytest.raises(NeuroditError):
            draw_subjects(**kw)
    with pytest.raises(NeuroditError, match="voxel size"):
        load_templates(50.0)


def test_cli_phantom_writes_cohort_and_bad_cohort_exits_2(tmp_path):
    runner = CliRunner()
    for cmd in ("phantom", "tile", "untile"):  # help text renders (rich markup: no [brackets])
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, res.output
    res = runner.invoke(app, ["phantom", "--cohort", "camcan", "--n", "2", "--out", str(tmp_path / "p"),
                              "--voxel-size", "8", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "sub-0002.nii.gz").is_file()
    res = runner.invoke(app, ["phantom", "--cohort", "oasis", "--n", "2", "--out", str(tmp_path / "q")])
    assert res.exit_code == 2 and "unknown cohort 'oasis'" in res.output
    assert not (tmp_path / "q").exists()


def test_labels_ages_and_include_mci():
    cam = draw_subjects("camcan", 41, seed=1)
    assert cam.sex.value_counts().to_dict() == {"F": 21, "M": 20}
    assert set(cam.diagnosis) == {"CN"} and cam.age.between(18, 88).all() and cam.age.std() > 15
    ad = draw_subjects("adni", 30, seed=1, include_mci=True)
    assert ad.diagnosis.value_counts().to_dict() == {"CN": 10, "MCI": 10, "AD": 10}
    assert ad.age.between(55, 90).all()
    sev = ad.groupby("diagnosis").sev_h.mean()
    assert sev["CN"] < sev["MCI"] < sev["AD"]
    assert set(draw_subjects("adni", 10, seed=1).diagnosis) == {"CN", "AD"}
    # one stream per subject: subject 0 and subject 3 differ (a plain [seed, 1, i] list would
    # collide for i = 0 with the cohort stream)
    assert draw_subjects("camcan", 5, seed=0).age.nunique() == 5


def test_tissue_values_in_pure_voxels_without_nuisance(t6):
    t = load_templates(2.0)
    row = dict(draw_subjects("camcan", 1, seed=0).iloc[0])
    row.update(scale_x=1.0, scale_y=1.0, scale_z=1.0, alpha=0.0, beta=0.0, sev_h=0.0,
               wm_md=TISSUE_MD["wm"], gm_md=TISSUE_MD["gm"], csf_md=TISSUE_MD["csf"])
    vol = synthesize_subject(t, row, deform=False, noise=False, field=False)
    # away from the sex blobs (< 2 % of their peak: < 0.05 % MD) and the hippocampi
    quiet = (np.abs(t.sex_pattern) < 0.02) & (t.hippocampus < 1e-3)
    wm = quiet & (t.wm > 0.99)
    csf = quiet & (t.csf > 0.99)
    assert wm.sum() > 500 and csf.sum() > 50
    np.testing.assert_allclose(vol[wm], 0.70e-3, rtol=0.035)  # <= 1 % CSF adds up to 3 %
    np.testing.assert_allclose(vol[csf], 3.0e-3, rtol=0.01)
    # exactly the partial-volume mixture of the three tissue values (to the 0.05 % sex blob tails)
    mix = t.gm * 0.85e-3 + t.wm * 0.70e-3 + t.csf * 3.0e-3
    np.testing.assert_allclose(vol[quiet], mix[quiet], rtol=6e-4, atol=1e-9)
    assert np.all(vol[t.mask == 0] == 0)
    # partial volume: a 50/50 GM/WM voxel lies between the two tissue values
    mixed = quiet & (np.abs(t.gm - 0.5) < 0.05) & (np.abs(t.wm - 0.5) < 0.05) & (t.csf < 0.005)
    assert mixed.any() and np.all((vol[mixed] > 0.70e-3) & (vol[mixed] < 0.85e-3))

    # with every nuisance on, tissue-pure voxels still sit near the nominal values
    noisy = synthesize_subject(t, draw_subjects("camcan", 1, seed=2).iloc[0])
    core_csf = ndimage.binary_erosion(t.csf > 0.95)  # ventricle cores (ventricles only grow)
    assert core_csf.sum() > 100
    assert 2.6e-3 < np.median(noisy[core_csf]) < 3.2e-3
    assert 0.62e-3 < np.median(noisy[ndimage.binary_erosion(t.wm > 0.95)]) < 0.86e-3
    far = ndimage.distance_transform_edt(t.mask == 0) > 10  # > 20 mm outside the brain
    assert np.all(noisy[far] == 0)


def test_camcan_age_effects(camcan):
    tab, m, _ = camcan
    # WM MD rises with age: nominal +15 % of 0.70e-3 over 70 y = 1.05e-4 mm²/s
    slope70 = np.polyfit(tab.age, m.wm_md, 1)[0] * 70
    assert stats.pearsonr(tab.age, m.wm_md)[0] > 0.6
    assert 0.5e-4 < slope70 < 1.6e-4
    # ventricles/central CSF grow with age
    assert stats.pearsonr(tab.age, m.csf_ml)[0] > 0.6
    assert m.csf_ml[tab.age > 70].mean() > 1.2 * m.csf_ml[tab.age < 35].mean()


def test_camcan_sex_effects_exist_but_overlap(camcan):
    tab, m, _ = camcan
    male = (tab.sex == "M").to_numpy()
    # head size: M - F linear scale +4 % -> ~+12 % brain volume, individual sd 3.5 %
    ratio = m.brain_ml[male].mean() / m.brain_ml[~male].mean()
    assert 1.04 < ratio < 1.22
    assert 0.5 < cohen_d(m.brain_ml[male], m.brain_ml[~male]) < 2.5
    # regional MD pattern: M higher frontally, lower parieto-occipitally (5 % at blob centres)
    d = cohen_d(m.pattern[male], m.pattern[~male])
    assert 1.0 < d < 3.5
    # ... but the groups overlap (not trivially separable)
    assert m.pattern[male].min() < m.pattern[~male].max()
    assert m.brain_ml[male].min() < m.brain_ml[~male].max()


def test_adni_ad_effects_exist_but_overlap(adni):
    tab, m, _ = adni
    ad, cn = (tab.diagnosis == "AD").to_numpy(), (tab.diagnosis == "CN").to_numpy()
    # hippocampal MD: +30 % at severity 1 inside the ellipsoids -> ~+10-20 % ROI mean
    rel = m.hip_md[ad].mean() / m.hip_md[cn].mean() - 1
    assert 0.06 < rel < 0.30
    assert cohen_d(m.hip_md[ad], m.hip_md[cn]) > 1.0
    assert m.hip_md[ad].min() < m.hip_md[cn].max()  # overlap
    # ventricular enlargement (alpha += 0.15 at severity 1)
    assert m.csf_ml[ad].mean() > m.csf_ml[cn].mean()
    assert tab.alpha[ad].mean() - tab.alpha[cn].mean() == pytest.approx(0.15, abs=0.08)
    # ages do not confound diagnosis
    assert abs(tab.age[ad].mean() - tab.age[cn].mean()) < 6


def test_effects_survive_32_cubed_resampling(t6, camcan, adni):
    """The phantom's own volumes, resampled to the demo's 32^3 grid (trilinear, as a prepared grid is),
    keep the documented tissue values and every labelled effect with its sign."""
    zoom = [32 / s for s in t6.shape]

    def to32(a):
        return ndimage.zoom(a, zoom, order=1)

    # tissue MD: without nuisances the map is a partial-volume mixture, and resampling is linear, so
    # regressing the 32^3 map on the 32^3 tissue fractions gives back WM / GM / CSF MD
    fractions = np.stack([to32(t6.wm), to32(t6.gm), to32(t6.csf)], -1)  # (32, 32, 32, 3)
    brain = to32(t6.mask) > 0.5
    row = dict(draw_subjects("camcan", 1, seed=3).iloc[0])
    row.update(scale_x=1.0, scale_y=1.0, scale_z=1.0, alpha=0.0, beta=0.0, sev_h=0.0,
               wm_md=TISSUE_MD["wm"], gm_md=TISSUE_MD["gm"], csf_md=TISSUE_MD["csf"])
    vol = to32(synthesize_subject(t6, row, deform=False, noise=False, field=False))
    md = np.linalg.lstsq(fractions[brain], vol[brain], rcond=None)[0]
    np.testing.assert_allclose(md, [0.70e-3, 0.85e-3, 3.0e-3], rtol=0.02)

    tab, _, vols = camcan
    v32 = np.stack([to32(v) for v in vols])
    wm_core = to32(t6.wm) > 0.9
    wm_md = np.array([np.median(v[wm_core]) for v in v32])
    # WM MD near 0.70e-3 in the young, rising with age (+15 % at 88 y)
    assert 0.65e-3 < np.median(wm_md[tab.age < 40]) < 0.85e-3
    assert stats.pearsonr(tab.age, wm_md)[0] > 0.6
    # ventricles and central CSF grow with age
    ax = np.meshgrid(*(np.linspace(a[0], a[-1], 32) for a in t6.axes_mm), indexing="ij")
    centre = (abs(ax[0]) < 30) & (ax[1] > -50) & (ax[1] < 35) & (ax[2] > -5) & (ax[2] < 40)
    csf_ml = np.clip((v32[:, centre] - 0.9e-3) / 2.1e-3, 0, 1).sum(1)
    assert stats.pearsonr(tab.age, csf_ml)[0] > 0.6
    # head size: men's brains are larger (+4 % linear scale: ~+12 % volume)
    male = (tab.sex == "M").to_numpy()
    brain_vox = (v32 > 1e-4).sum((1, 2, 3))
    assert 1.04 < brain_vox[male].mean() / brain_vox[~male].mean() < 1.25
    # AD: hippocampal MD higher than in CN
    tab, _, vols = adni
    hip = to32(t6.hippocampus) > 0.5
    assert hip.sum() >= 10
    hip_md = np.stack([to32(v)[hip].mean() for v in vols])
    ad = (tab.diagnosis == "AD").to_numpy()
    assert hip_md[ad].mean() > 1.08 * hip_md[~ad].mean()


def test_effect_sizes_are_configurable(t6):
    row = draw_subjects("adni", 2, seed=4).iloc[1]
    base = synthesize_subject(t6, row)
    none = synthesize_subject(t6, row, dataclasses.replace(PhantomEffects(), hippo_md=0.0))
    hip = t6.hippocampus > 0.5
    # the warp moves the ROI by a few mm: compare far from it (3 voxels = 18 mm margin)
    outside = ~ndimage.binary_dilation(t6.hippocampus > 1e-3, iterations=3)
    expect = 1 + 0.30 * row.sev_h * t6.hippocampus[hip].mean()
    assert row.sev_h > 0.5
    assert base[hip].mean() / none[hip].mean() == pytest.approx(expect, rel=0.1)
    np.testing.assert_allclose(base[outside], none[outside], rtol=1e-4)  # logistic tails only
