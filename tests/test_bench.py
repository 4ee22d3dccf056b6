"""`neurodit bench` returns and writes positive timings (no timing thresholds: timings live in bench)."""

from __future__ import annotations

import json

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
