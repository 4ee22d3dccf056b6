"""`neurodit bench` returns and writes positive timings (no timing thresholds: timings live in bench)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from neurodit.cli import app


def test_bench_cli_writes_json(tmp_path):
    preset = tmp_path / "b.yaml"
    preset.write_text(yaml.safe_dump({"grid_shape": [8, 8, 8], "num_layers": 1, "num_attention_heads": 2,
                                      "attention_head_dim": 8, "patch_size": 4}))
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--preset", str(preset), "--steps", "2", "--batch-size", "2",
                                   "--sample-steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["mosaic"] == 24 and r["tokens"] == 36  # 8 slices -> 3x3 tiles of 8^2; patch 4
    assert r["train_s_per_step"] > 0 and r["sample_s_per_volume"] > 0
    assert abs(r["train_img_per_s"] - 2 / r["train_s_per_step"]) < 0.05 * r["train_img_per_s"] + 0.01
    assert "train_s_per_step" in res.output and "torch" in data["versions"]


@pytest.mark.slow
def test_bench_evaluate_memory_quick_writes_rss_table(tmp_path):
    """`bench --evaluate --eval-quick --eval-part memory`: one fresh evaluate() process per synthetic set
    size, each with a positive peak RSS (no threshold here: the figures live in bench, README)."""
    out = tmp_path / "eval_bench.json"
    res = CliRunner().invoke(app, ["bench", "--evaluate", "--eval-quick", "--eval-part", "memory",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    rows = data["memory"]["rows"]
    assert [r["n_synthetic"] for r in rows] == [2, 8] and all(r["vmhwm_mb"] > 50 for r in rows)
    assert data["cpu"]["torch_cpu_capability"] and "time" not in data
    assert "peak RSS" in res.output and "n_synthetic" in res.output
