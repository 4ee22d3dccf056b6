"""The judge in the report: C2ST, feature metrics, morphometry, the calibration panel, the summary order,
"not run" for missing families, and the site shift of the phantom cohorts (issues 10 and 11)."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
from report_stages import (
    CALIBRATION,
    METRICS,
    VERDICT_C2ST,
    VERDICT_DIVERSITY,
    VERDICT_FEATURES,
    VERDICT_MORPHOMETRY,
)

from helpers import write_tiny_cohort
from neurodit.errors import NeuroditError
from neurodit.io import write_json
from neurodit.report import build_report
from neurodit.report import judge as J
from neurodit.report.html import fmt

SITES = {"camcan": {"name": "camcan", "md_scale": 1.0, "noise_sd": 0.03, "blur_fwhm_mm": 2.0, "bias_sd": 0.02},
         "adni": {"name": "adni", "md_scale": 1.05, "noise_sd": 0.05, "blur_fwhm_mm": 5.0, "bias_sd": 0.04}}


def section(page: str, sid: str) -> str:
    return page.split(f'id="{sid}"')[1].split("</section>")[0]


def table_after(fragment: str, heading: str) -> list[list[str]]:
    """The rows (header first) of the first table after ``heading``, cells unescaped."""
    start = fragment.index("<table>", fragment.index(heading))
    body = fragment[start:fragment.index("</table>", start)]
    return [[html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body)]


def summary_lines(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<li><span class="[^"]+">([^<]*)</span>', section(page, "summary"))]


@pytest.fixture
def page(stage_dirs, tmp_path) -> str:
    return build_report([stage_dirs["root"]], tmp_path / "r.html").read_text()


def test_renderers_show_the_numbers(page):
    judge = section(page, "judge")
    rows = table_after(judge, "Can a classifier tell synthetic from real?")
    assert rows[0][:5] == ["view", "AUC", "95% CI low", "95% CI high", "p"]
    assert [r[0] for r in rows[1:]] == [J.VIEWS["voxel"], J.VIEWS["texture"], J.VIEWS["cnn"]]
    assert rows[1][1:5] == ["0.9876", "0.9512", "1", "0.0099"] and rows[3][1:5] == ["0.8123", "0.7011", "0.9235",
                                                                                   "0.0013"]
    assert rows[3][8] == "0" and rows[1][8] == "100"  # permutations: CNN by Mann-Whitney
    feats = table_after(judge, "Feature-space metrics")
    assert feats[0] == ["quantity", "real vs synthetic", "real vs real floor (real reference (e.g. training) vs real)"]
    # the ratio first (computed from the floor for a metrics.json without frechet_ratio), then the raw figure
    assert feats[1] == ["Fréchet distance / real-vs-real floor", fmt(12.345 / 3.2109), "1"]
    assert feats[2] == ["Fréchet distance (raw)", fmt(12.345), "3.211"] and feats[4] == ["recall", "0.5", "0.8333"]
    info = dict(table_after(judge, "<table><thead><tr><th>encoder</th>")[1:])
    assert info["encoder"] == "own" and info["weights sha256"] == "9f86d081884c"
    assert info["feature dimension"] == "32" and info["real volumes"] == "6" and info["reference volumes"] == "8"
    assert info["trained on (volumes)"] == "160"
    assert "the covariance is rank deficient" in judge and VERDICT_FEATURES in judge
    morph = table_after(judge, "Morphometry: tissue fractions")
    assert morph[1] == ["white-matter-like fraction", "0.4012", "0.0211", "0.4133", fmt(0.0211 * 0.8),
                        fmt(abs(0.4012 - 0.4133) * 1.1), "0.4321"]
    assert morph[4][0] == "brain volume (ml)" and morph[4][1] == "1402"
    eff = table_after(judge, "Age and sex effects")
    assert eff[1] == ["CSF-like fraction vs age (slope)", "0.0213", "[0.0151, 0.0275]", "0.0071",
                      "[−0.0012, 0.0154]", "per decade"]
    assert eff[2][3] == "—" and eff[2][4] == "—"  # the synthetic set has one sex only
    assert VERDICT_MORPHOMETRY in judge and "Not run" not in page


def test_summary_c2st_first_then_calibration(page):
    lines = summary_lines(page)
    assert lines[0] == VERDICT_C2ST
    assert lines[1].startswith("Calibration on this dataset: the classifier's AUC (best view; 0.5 = cannot tell "
                               "apart) is model 0.99, noise 1.00, mean 0.99, copy 0.50, pca 0.57.")
    assert lines[1].endswith("The model's AUC is nearest the mean reference's (0.99 vs 0.99; point estimates, "
                             "not tested against each other).")
    summary = section(page, "summary")
    # the panel's table sits in the summary right after its sentence, before the downstream verdicts
    assert summary.index("Calibration on this dataset") < summary.index("<table>") < summary.index("Sex classifier")
    rest = lines[2:]
    assert rest[0].startswith("Sex classifier") and rest[1].startswith("AD vs CN")
    for verdict in (VERDICT_FEATURES, VERDICT_MORPHOMETRY, VERDICT_DIVERSITY):
        assert verdict in rest  # the top-level verdicts' diversity sentence too
    assert lines.count(VERDICT_C2ST) == 1  # said once although it is both a family and a top-level verdict


def test_calibration_table_has_one_row_per_generator(page):
    rows = table_after(section(page, "summary"), "Calibration panel")
    assert rows[0] == ["generator", "C2ST AUC voxel", "C2ST AUC texture", "C2ST AUC CNN", "Fréchet / real-vs-real floor",
                       "recall", "MS-SSIM syn–syn", "MS-SSIM real–real", "memorized fraction"]
    assert [r[0] for r in rows[1:]] == ["model", "noise", "mean", "copy", "pca"]
    # every row from `calibration` (the model's headline numbers included); its `labels` is no row
    assert rows[1][1:] == ["0.9876", "0.9432", "0.8123", fmt(12.345), "0.5", "0.9123", "0.8312", "0"]
    assert rows[2][1:] == ["0.6111", "1", "—", "45.61", "0.1667", "0.7342", "0.8312", "0"]
    assert rows[4][1:3] == ["0.5012", "0.4833"] and rows[4][-1] == "1"
    assert rows == table_after(section(page, "judge"), "Calibration panel")  # same panel in the judge section
    for words in ("a copy fools the classifier", "only the memorization audit catches it", "zero diversity",
                  "fails the texture view"):
        assert words in page


def test_calibration_other_kinds_follow_and_empty_columns_drop():
    """Known references first, other kinds after; a column nobody has is dropped; ``labels`` is no row."""
    panel = {"pca": {"c2st": {"voxel": {"auc": 0.55, "p_value": 0.3}},
                     "memorization": {"fraction_above": 0.05, "flagged": False}},
             "dit-guidance-1": {"c2st": {"voxel": {"auc": 0.91}}}, "copy": {"c2st": {"voxel": {"auc": 0.5}}},
             "note": "x", "labels": {"pca": {"F": 1}}}
    body, sentence = J.calibration(panel)
    rows = table_after(body, "Calibration panel")
    assert rows[0] == ["generator", "C2ST AUC voxel", "memorized fraction"]  # 'note' (not a dict) is no row
    assert rows[1:] == [["copy", "0.5", "—"], ["pca", "0.55", "0.05"], ["dit-guidance-1", "0.91", "—"]]
    assert sentence == ("Calibration on this dataset: the classifier's AUC (best view; 0.5 = cannot tell apart) "
                        "is copy 0.50, pca 0.55, dit-guidance-1 0.91.")


def test_calibration_shows_the_raw_frechet_only_without_a_ratio():
    """A calibration entry with a floor shows its ratio; one without (an older metrics.json) its raw
    figure, in a column whose header says it is raw."""
    panel = {"pca": {"features": {"frechet": 0.47, "frechet_ratio": 4.57}},
             "noise": {"features": {"frechet": 3.31}}}
    rows = table_after(J.calibration(panel)[0], "Calibration panel")
    assert rows[0] == ["generator", "Fréchet / real-vs-real floor", "Fréchet (raw: no floor)"]
    assert rows[1:] == [["noise", "—", "3.31"], ["pca", "4.57", "—"]]
    # every entry with a ratio: no raw column at all
    rows = table_after(J.calibration({"pca": panel["pca"]})[0], "Calibration panel")
    assert rows == [["generator", "Fréchet / real-vs-real floor"], ["pca", "4.57"]]


def test_missing_families_say_not_run(stage_dirs, tmp_path):
    write_json(stage_dirs["eval"] / "metrics.json", {"msssim": METRICS["msssim"]})
    page = build_report([stage_dirs["eval"]], tmp_path / "r.html").read_text()
    judge = section(page, "judge")
    for note in ("Not run: metrics.json has no classifier two-sample test (C2ST).",
                 "Not run: no calibration panel (reference generators; evaluate --calibrate).",
                 "Not run: no feature-space metrics (Fréchet distance, precision / recall).",
                 "Not run: no morphometry (tissue fractions, brain volume)."):
        assert html.escape(note) in judge, note
    assert summary_lines(page)[0].startswith("MS-SSIM real–synthetic")
    # features without a floor: the floor column is empty and says why
    metrics = dict(METRICS, features={**METRICS["features"], "floor": None})
    write_json(stage_dirs["eval"] / "metrics.json", metrics)
    page = build_report([stage_dirs["eval"]], tmp_path / "r2.html").read_text()
    assert "the real-vs-real floor was not computed" in page
    assert table_after(section(page, "judge"), "Feature-space metrics")[1] == [
        "Fréchet distance (raw: no floor to scale it)", fmt(12.345), "—"]


def test_bad_c2st_family_names_the_file(stage_dirs, tmp_path):
    write_json(stage_dirs["eval"] / "metrics.json", dict(METRICS, c2st={"views": {"voxel": {"p_value": 0.1}}}))
    with pytest.raises(NeuroditError, match=r"metrics\.json.*family 'c2st': missing or bad key 'auc'"):
        build_report([stage_dirs["eval"]], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_site_shift_of_the_phantom_cohorts(stage_dirs, tmp_path):
    root = stage_dirs["root"]
    adni = write_tiny_cohort(root / "adni", n=4, shape=(24, 28, 24), voxel_size=8.0, seed=5, diagnosis=True)
    write_json(root / "camcan" / "phantom.json", {"cohort": "camcan", "n": 6, "site": SITES["camcan"]})
    write_json(adni / "phantom.json", {"cohort": "adni", "n": 4, "site": SITES["adni"]})
    shutil.copytree(adni, root / "adni_copy")  # the same site twice is listed once
    page = build_report([root], tmp_path / "r.html").read_text()
    rows = table_after(section(page, "downstream"), "Site shift the transfer arms face")
    assert rows[0] == ["site effect", "camcan (camcan-like)", "adni (adni-like)"]
    assert rows[1:] == [["MD scale (× true MD)", "1", "1.05"], ["voxel noise sd (fraction of MD)", "0.03", "0.05"],
                        ["blur FWHM (mm)", "2", "5"], ["bias field sd", "0.02", "0.04"]]
    sentence = ("The transfer arms (camcan → adni) face a site shift: MD scale (× true MD) 1 vs 1.05; voxel noise "
                "sd (fraction of MD) 0.03 vs 0.05; blur FWHM (mm) 2 vs 5; bias field sd 0.02 vs 0.04.")
    lines = summary_lines(page)
    assert sentence in lines and lines.index(sentence) == lines.index(next(x for x in lines if x.startswith("AD vs")))+1
    # unknown keys of `site` are shown too; a classic phantom (no site) is left out
    write_json(adni / "phantom.json", {"cohort": "adni", "site": {**SITES["adni"], "gibbs_ringing": 0.2}})
    write_json(root / "adni_copy" / "phantom.json", {"cohort": "adni", "n": 4})
    page = build_report([root], tmp_path / "r2.html").read_text()
    rows = table_after(section(page, "downstream"), "Site shift the transfer arms face")
    assert rows[-1] == ["gibbs ringing", "—", "0.2"] and len(rows[0]) == 3
    write_json(adni / "phantom.json", {"cohort": "adni", "site": ["not", "an", "object"]})
    with pytest.raises(NeuroditError, match=r"adni/phantom\.json.*'site' must map effect names"):
        build_report([root], tmp_path / "r3.html")


def test_judge_section_in_page_order(page):
    ids = re.findall(r'<section[^>]* id="([a-z]+)"', page)
    assert ids[:4] == ["summary", "images", "judge", "similarity"]
    assert '<a href="#judge">Judge</a>' in page
    assert json.dumps(CALIBRATION)  # the fixture is JSON-able as metrics.json must be
