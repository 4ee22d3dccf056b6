"""``neurodit demo --ablation pretraining`` (issue 23): the verdict rule on rows with known numbers, the table
and figure, and (slow) the whole command at toy sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurodit.ablation.render import ablation_figure, ablation_markdown  # noqa: E402
from neurodit.ablation.schema import STARTS  # noqa: E402
from neurodit.ablation.stage import load_ablation_config, summarize  # noqa: E402
from neurodit.cli import app  # noqa: E402


def _row(path: str, auc: float, half: float, gain: float) -> dict:
    views = {v: {"auc": auc, "auc_ci95": [auc - half, auc + half], "p_value": 0.01} for v in ("voxel", "texture", "cnn")}
    return {"input": path, "name": Path(path).name,
            "quality": {"c2st": views, "frechet_ratio": 2.0 + auc, "precision": 0.5, "recall": 0.5},
            "diversity": {"syn_syn": 0.9, "real_real": 0.88}, "memorization": {"fraction_above": 0.05},
            "downstream": {"gain": gain, "ci95": [gain - 0.02, gain + 0.02]}, "cost": {"train_seconds": 10.0}}


def test_verdicts_follow_the_ci_rule(tmp_path):
    cfg = load_ablation_config("pretraining", {"budgets": [100, 300], "seeds": [0]})
    # natural: clearly lower AUC (helped); adni: the same as scratch at 100 (no clear difference), clearly
    # higher at 300 (hurt); downstream gains: natural clearly above scratch's
    auc = {("scratch", 100): 0.90, ("natural", 100): 0.70, ("adni", 100): 0.91,
           ("scratch", 300): 0.80, ("natural", 300): 0.60, ("adni", 300): 0.97}
    runs = {(s, b, 0): tmp_path / f"ft_{s}_{b}" for s in STARTS for b in (100, 300)}
    rows = [_row(str(p), auc[(s, b)], 0.03, 0.10 if s == "natural" else 0.0) for (s, b, _), p in runs.items()]
    starts = {}
    for name in ("natural", "adni"):
        starts[name] = tmp_path / f"start_{name}"
        starts[name].mkdir()
        (starts[name] / "run.json").write_text('{"steps_trained": 50, "train_seconds": 5.0, "final_loss": 1.0}')
    floor = {"c2st": {v: {"auc": 0.5, "auc_ci95": [0.4, 0.6], "p_value": 0.5} for v in ("voxel", "texture", "cnn")}}
    data = summarize({"rows": rows, "floor": floor}, runs, cfg, starts)
    got = {(c["start"], c["steps"]): c for c in data["contrasts"]}
    assert got[("natural", 100)]["verdict"] == "helped"
    assert got[("natural", 100)]["c2st"]["voxel"]["diff"] == pytest.approx(-0.20, abs=1e-6)
    # se = 0.06 / 3.92 per row -> CI half-width 1.96 * sqrt(2) * se = 0.0424
    lo, hi = got[("natural", 100)]["c2st"]["voxel"]["ci95"]
    assert lo == pytest.approx(-0.2424, abs=1e-3) and hi == pytest.approx(-0.1576, abs=1e-3)
    assert got[("adni", 100)]["verdict"] == "no clear difference"
    assert got[("adni", 300)]["verdict"] == "hurt"
    assert got[("natural", 300)]["downstream_verdict"] == "helped"
    assert got[("adni", 300)]["downstream_verdict"] == "no clear difference"
    md = ablation_markdown(data)
    assert "| natural | 100 | 0.70 (0.67–0.73)" in md and md.count("\n- ") == 4
    png = ablation_figure(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the report's section: found by its ablation.json, verdicts in the summary box, figure embedded
    from neurodit.io import write_json
    from neurodit.report import build_report

    folder = tmp_path / "abl"
    folder.mkdir()
    write_json(folder / "ablation.json", data)
    (folder / "ablation.png").write_bytes(png)
    page = build_report([folder], tmp_path / "report.html").read_text()
    assert 'id="ablation"' in page and page.count("Pretraining: natural vs scratch at") == 2


def test_config_rejects_unknown_keys_and_ablations():
    from neurodit.errors import NeuroditError

    with pytest.raises(NeuroditError, match="nope"):
        load_ablation_config("pretraining", {"nope": 1})
    with pytest.raises(NeuroditError, match="unknown ablation"):
        load_ablation_config("other")
    res = CliRunner().invoke(app, ["demo", "--ablation", "other", "--out", "x"])
    assert res.exit_code == 2 and "--ablation must be one of pretraining" in res.output


@pytest.mark.slow
def test_quick_ablation_end_to_end(tmp_path):
    """One quick ablation at one budget: the natural start given as an --init source (``natural_init``, as
    facebook/DiT-XL-2-256 would be; here a ``neurodit pretrain`` run at the quick config's sizes, so the
    stage's own pretraining call is the one tests/test_pretrain.py runs), the adni start trained here."""
    from neurodit.pretrain import pretrain

    quick = load_ablation_config("pretraining", quick=True)
    natural = pretrain(quick.images, "tiny-p32", tmp_path / "natural", max_steps=quick.pretrain_steps,
                       n_crops=quick.n_crops, overrides={"num_threads": 1, "preview_per_class": 0})
    out = tmp_path / "abl"
    res = CliRunner().invoke(app, ["demo", "--ablation", "pretraining", "--quick", "--out", str(out), "--set",
                                   f"natural_init={natural / 'model'}", "--set", "budgets=[2]"])
    assert res.exit_code == 0, res.output
    for name in ("ablation.md", "ablation.png", "ablation.json", "compare/comparison.json",
                 "start_adni/model/config.json"):
        assert (out / name).is_file(), name
    assert not (out / "start_natural").exists()  # given, not pretrained here
    ft = yaml.safe_load((out / "ft_natural_2_s0" / "train_config.yaml").read_text())
    assert ft["init"] == str(natural / "model")
    assert yaml.safe_load((out / "ft_adni_2_s0" / "train_config.yaml").read_text())["init"] == str(
        out / "start_adni" / "model")
    assert yaml.safe_load((out / "ft_scratch_2_s0" / "train_config.yaml").read_text())["init"] is None
    assert (out / "ablation.md").read_text().count("vs scratch at") == 2
