"""`neurodit report`: numbers, sections, embedded images, escaping, graceful gaps, bad input."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from report_stages import METRICS, RESULTS, VERDICT_AD, VERDICT_C2ST, VERDICT_SEX
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.errors import NeuroditError
from neurodit.io import write_json
from neurodit.report import build_report, detect_kind, discover
from neurodit.report.figures import display_mosaic
from neurodit.report.html import fmt

IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


def images(page: str) -> dict[str, Image.Image]:
    """alt text -> decoded PNG of every embedded image (fails if one is not a valid PNG)."""
    out = {}
    for data, alt in IMG_RE.findall(page):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        out[alt] = im
    return out


def test_detect_kinds(stage_dirs):
    kinds = {name: detect_kind(p) for name, p in stage_dirs.items()}
    assert kinds == {"root": None, "real": "real", "synthetic": "synthetic", "train": "train",
                     "eval": "eval", "downstream": "downstream"}
    found = discover([stage_dirs["root"]])  # a demo root: one level down, sorted by name
    assert [(f.kind, f.name) for f in found] == [
        ("real", "camcan"), ("downstream", "downstream"), ("eval", "eval"), ("train", "run"),
        ("synthetic", "synthetic")]


def test_full_report_numbers_sections_images(stage_dirs, tmp_path):
    out = build_report([stage_dirs["root"]], tmp_path / "report.html")
    page = out.read_text()
    # sections, in order, and no "not run" anywhere: every stage was given
    ids = re.findall(r'<section[^>]* id="([a-z]+)"', page)
    assert ids == ["summary", "images", "judge", "similarity", "memorization", "downstream", "training",
                   "provenance"]
    assert "Not run" not in page
    # summary box: both downstream verdicts (escaped: × stays, − stays), memorization, MS-SSIM floor
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert VERDICT_SEX in summary and VERDICT_AD in summary
    assert "no sign of memorization: 0.0% of synthetic volumes" in summary
    assert "MS-SSIM real–synthetic 0.774 vs real–real floor 0.831" in summary
    assert "200 steps" in summary
    # MS-SSIM / MMD table values, memorization numbers, downstream arms and differences
    for text in ("real–real (floor)", "0.8312", "0.8101", "0.8523", "0.7741", "0.9123", "0.01234", "0.0421",
                 "5.670e\u221204", "0.00321", "two random halves of REAL_DIR", "7.010e\u221204", "2.200e\u221205",
                 "sagittal", "0.6131", "1.218", "syn-000003", "sub-0006",
                 "0.9871", "0.9704", "0.701 (0.661 to 0.741)", "0.662 (0.622 to 0.702)",
                 "\u22120.081", "\u22120.12", "0.0503", "3/2/1"):
        assert text in page, text
    # the MD table is computed from the volumes: median of the first real F volume's brain voxels etc.
    real = stage_dirs["real"]
    vals = np.concatenate([np.asarray(nib.load(real / f"sub-{i:04d}_md.nii.gz").dataobj).ravel()
                           for i in (1, 3, 5)])  # sex F = odd ids
    assert f"<td>F</td><td>real (camcan)</td><td class=\"num\">3</td><td class=\"num\">" \
           f"{fmt(float(np.percentile(vals[vals > 0] * 1e3, 50)))}</td>" in page
    # embedded images: every one decodes; the figures we draw are all there
    imgs = images(page)
    for alt in ("real vs synthetic mosaics per class", "three-plane view of one synthetic volume",
                "MD histograms", "balanced accuracy per arm", "paired differences", "training loss curve",
                "msssim", "memorization", "mosaics", "arms", "preview", "real"):
        assert alt in imgs, alt
        assert imgs[alt].width > 20 and imgs[alt].height > 20
    mosaic = np.asarray(imgs["real vs synthetic mosaics per class"].convert("L"), dtype=float)
    assert mosaic.std() > 10  # not blank: brains on black with a colour bar
    # configs and versions: run.json in a collapsible block, versions table with torch
    assert "<details><summary>run.json</summary>" in page
    assert "<details><summary>train_config.yaml</summary>" in page and "v_prediction" in page
    assert re.search(r"<td>torch</td><td>[0-9.]+", page)
    assert '<td>train</td><td class="num">30.5</td><td><code>neurodit train prep --out run' in page  # demo.json
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "Content-Security-Policy" in page


def test_results_of_another_schema_are_refused(tmp_path):
    """The report renders results.json of schema neurodit.downstream/2 (or /1) only, and says which file is wrong."""
    ds = tmp_path / "ds"
    ds.mkdir()
    write_json(ds / "results.json", {"comparisons": {"synthetic": {"mean_diff": 0.01, "ci95": [-0.03, 0.05]}}})
    with pytest.raises(NeuroditError, match=r"results\.json.*expected schema neurodit\.downstream/2 or "
                                            r"neurodit\.downstream/1"):
        build_report([ds], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_every_arm_of_every_named_cohort_is_shown(tmp_path):
    """Schema /2 with two named cohorts: each cohort's data row, arms and comparisons appear."""
    arms, comps = dict(RESULTS["arms"]), list(RESULTS["comparisons"])
    mixed = arms.pop("sex/real+synthetic")
    arms.update({"sex/real+synthetic[dit]": mixed, "sex/real+synthetic[pca]": {**mixed, "n_runs": 5}})
    comps[0] = {**comps[0], "name": "sex/real+synthetic[dit] vs sex/real", "arm": "sex/real+synthetic[dit]"}
    comps.append({**comps[0], "name": "sex/real+synthetic[pca] vs sex/real", "arm": "sex/real+synthetic[pca]"})
    syn = RESULTS["data"]["synthetic"]
    ds = tmp_path / "ds"
    ds.mkdir()
    write_json(ds / "results.json", {**RESULTS, "schema": "neurodit.downstream/2", "arms": arms, "comparisons": comps,
                                     "data": {**RESULTS["data"], "synthetic": {"dit": syn, "pca": syn}}})
    page = html.unescape(build_report([ds], tmp_path / "r.html").read_text())
    for text in ("synthetic (dit)", "synthetic (pca)"):
        assert text in page, text
    for arm in ("sex/real+synthetic[dit]", "sex/real+synthetic[pca]"):  # the arms table and the comparisons'
        assert page.count(f"<td>{arm}</td>") == 2, arm


def test_escaping(stage_dirs, tmp_path):
    evil = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    results = json.loads((stage_dirs["downstream"] / "results.json").read_text())
    results["verdict"]["synthetic_for_sex"] = evil
    write_json(stage_dirs["downstream"] / "results.json", results)
    (stage_dirs["train"] / "train_config.yaml").write_text(f"note: '{evil}'\n")
    page = build_report([stage_dirs["downstream"], stage_dirs["train"]], tmp_path / "r.html").read_text()
    assert evil not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<script>") == 1  # only our own checker


def test_missing_sections_degrade(stage_dirs, tmp_path):
    page = build_report([stage_dirs["train"]], tmp_path / "r.html").read_text()
    assert "Not run: no cohort, prepared or synthetic folder was given." in page
    assert "Not run: no evaluation folder (metrics.json) was given." in page
    assert "Not run: no downstream folder (results.json) was given." in page
    assert "training loss curve" in page
    # metrics.json without a memorization audit or MMD: those parts say so, the rest renders
    ev = stage_dirs["eval"]
    write_json(ev / "metrics.json", {"msssim": METRICS["msssim"]})
    page = build_report([ev, stage_dirs["real"]], tmp_path / "r2.html").read_text()
    assert "Not run: metrics.json has no memorization audit." in page and "No MMD values" in page
    assert "0.8312" in page
    assert "real vs synthetic mosaics per class" in page and "synthetic (" not in page  # real only


def test_bad_input_errors_leave_no_file(stage_dirs, tmp_path):
    out = tmp_path / "r.html"
    with pytest.raises(NeuroditError, match="folder not found"):
        build_report([tmp_path / "nope"], out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NeuroditError, match="no neurodit output found"):
        build_report([empty], out)
    (stage_dirs["eval"] / "metrics.json").write_text("{not json")
    with pytest.raises(NeuroditError, match=r"metrics\.json.*not valid JSON"):
        build_report([stage_dirs["root"]], out)
    (stage_dirs["train"] / "loss.csv").write_text("epoch,value\n1,2\n")
    with pytest.raises(NeuroditError, match=r"loss\.csv.*needs columns step and loss"):
        build_report([stage_dirs["train"]], out)
    assert not out.exists() and not list(tmp_path.glob(".r.html*"))


def test_display_mosaic_orientation():
    """Anterior (high y in RAS) is drawn at the top of each tile, the subject's left on the left."""
    vol = np.zeros((8, 10, 4), np.float32)
    vol[:, 7:, :] = 1.0  # anterior band
    vol[0, :, :] += 2.0  # subject's left column (x = 0 is leftmost in RAS)
    m = display_mosaic(vol)
    tile = m[:10, :10]  # first tile: (H=y flipped, D=x), padded to a square 10x10
    cols = np.flatnonzero(tile.any(axis=0))
    assert len(cols) == 8 and (tile[:, cols[0]] >= 2.0).all()  # left marker in the leftmost brain column
    rest = tile[:, cols[1:]]
    assert rest[:3].min() == 1.0 and rest[3:].max() == 0.0  # anterior band in the top 3 rows


def test_cli_report(stage_dirs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.html"
    res = runner.invoke(app, ["report", str(stage_dirs["eval"]), str(stage_dirs["downstream"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "report: wrote" in res.output and out.is_file()
    res = runner.invoke(app, ["report", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and "folder not found" in res.output


def test_prepared_dir_is_the_real_reference(stage_dirs, tmp_path):
    """A PREP_DIR (model range on the training grid) is shown in mm²/s, preferred over the raw cohort."""
    from neurodit.data.prepare import prepare

    prep = prepare(stage_dirs["real"], tmp_path / "prep", voxel_size=8.0, workers=1)
    page = build_report([prep, stage_dirs["real"], stage_dirs["synthetic"]], tmp_path / "r.html").read_text()
    assert "real (prep): 6 volumes" in page and "real (camcan)" not in page
    meta = json.loads((prep / "prepare.json").read_text())
    vmin, vmax = meta["normalization"]["vmin"], meta["normalization"]["vmax"]
    vols = np.load(prep / "volumes.npy")[[0, 2, 4]]  # sex F: rows 1, 3, 5
    mask = np.load(prep / "mask.npy")
    phys = np.where(mask, (vols + 1) / 2 * (vmax - vmin) + vmin, 0.0)
    med = float(np.percentile(phys[phys > 0] * 1e3, 50))
    assert f"<td>F</td><td>real (prep)</td><td class=\"num\">3</td><td class=\"num\">{fmt(med)}</td>" in page


def test_real_reference_is_the_training_source(stage_dirs, tmp_path):
    """A demo root holds two real cohorts: the one the run was prepared from is shown (not adni)."""
    from helpers import write_tiny_cohort

    write_tiny_cohort(stage_dirs["root"] / "adni", n=4, shape=(24, 28, 24), voxel_size=8.0, seed=5, diagnosis=True)
    page = build_report([stage_dirs["root"]], tmp_path / "a.html").read_text()
    assert "real (adni)" in page  # both have sex F/M: without provenance the first by name wins
    write_json(stage_dirs["train"] / "prepare.json", {"source": str(stage_dirs["real"]), "n": 6})
    page = build_report([stage_dirs["root"]], tmp_path / "b.html").read_text()
    assert "real (camcan)" in page and "real (adni)" not in page


def test_new_family_verdict_in_summary(stage_dirs, tmp_path):
    """A family without a dedicated renderer still shows: its verdict joins the summary's metric lines
    and its values are listed; a family's own verdict replaces the renderer's sentence (one summary line per
    family); the C2ST verdict leads the summary."""
    metrics = json.loads((stage_dirs["eval"] / "metrics.json").read_text())
    metrics["lesions"] = {"load": {"auc": 0.987, "p_value": 0.002}, "verdict": "lesion load as in real brains"}
    metrics["msssim"]["verdict"] = "diversity as in real data"
    write_json(stage_dirs["eval"] / "metrics.json", metrics)
    page = build_report([stage_dirs["eval"]], tmp_path / "r.html").read_text()
    summary = page.split('id="summary"')[1].split("</section>")[0]
    lines = [html.unescape(t) for t in re.findall(r"<li><span class=\"[^\"]+\">([^<]*)</span>", summary)]
    assert lines[0] == VERDICT_C2ST and lines[1].startswith("Calibration on this dataset")
    assert lines[2].startswith("Memorization: no sign of memorization")
    i = lines.index("diversity as in real data")
    assert not any(t.startswith("MS-SSIM real–synthetic") for t in lines)  # said once, by the verdict
    assert "lesion load as in real brains" in lines[i + 1:]
    assert "<td>load.auc</td>" in page and "0.987" in page


def test_report_reads_artifacts_only():
    """report/ opens no NIfTI itself and imports no train, sample or tiling internals."""
    import ast
    from pathlib import Path

    import neurodit.report

    for f in Path(neurodit.report.__file__).parent.glob("*.py"):
        tree = ast.parse(f.read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        for m in mods:
            assert not m.startswith(("nibabel", "neurodit.train", "neurodit.sample")), (f.name, m)
            assert not m.startswith("neurodit.tiling") or f.name == "figures.py", (f.name, m)
