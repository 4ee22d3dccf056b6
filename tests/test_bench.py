"""`neurodit bench` writes every figure with sane values (no timing thresholds: timings live in bench)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from neurodit.cli import app

# 1 block of width 16 (2 heads x 8), patch 4 on an 8^3 grid: 8 slices -> 3x3 tiles of 8^2 = 24^2, 36 tokens
TINY = {"grid_shape": [8, 8, 8], "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8,
        "patch_size": 4}


def _preset(tmp_path, **over):
    preset = tmp_path / "b.yaml"
    preset.write_text(yaml.safe_dump({**TINY, **over}))
    return preset


def _check_machine(data):
    m = data["machine"]
    assert m["torch_cpu_capability"] and isinstance(m["native_bf16"], bool)
    assert m["peak_gflops"]["fp32"] > 0 and (m["peak_gflops"]["bf16"] is None) == (not m["native_bf16"])
    assert set(m["peak_matmul_n"]) <= {"fp32", "bf16"} and m["peak_threads"] >= 1


def test_bench_bare_step_of_a_preset_writes_json(tmp_path):
    """--loop-steps 0: the bare step of a fresh preset DiT, its FLOPs by hand (checked against the
    counter, which sees every matmul of this 36-token DiT), the fraction of the peak, sampling."""
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--preset", str(_preset(tmp_path)), "--steps", "2", "--batch-size", "2",
                                   "--sample-steps", "2", "--loop-steps", "0", "--no-judge", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    _check_machine(data)
    (r,) = data["results"]
    assert r["mosaic"] == 24 and r["tokens"] == 36 and r["subject"] == "preset" and "loop" not in r
    b = r["bare"]
    assert r["train_s_per_step"] == b["s_per_step"] > 0 and r["sample_s_per_volume"] > 0
    assert abs(b["samples_per_s"] - 2 / b["s_per_step"]) < 0.05 * b["samples_per_s"] + 0.01
    # by hand: 3 x 2 x B x (T x (12 D^2 L + p^2 (C_in + C_out) D) + 2 T^2 D L) = 2,045,952 FLOPs
    assert b["model_gflop_per_step"] == round(6 * 2 * (36 * (12 * 16 * 16 + 16 * 2 * 16) + 2 * 36 * 36 * 16) / 1e9, 3)
    assert 0.9 < b["counted_gflop_per_step"] / b["model_gflop_per_step"] < 1.1  # + the per-sample layers
    assert 0 < r["fraction_of_peak"] <= 1.5 and r["peak_kind"] in ("fp32", "bf16")
    shares = r["profile"]["time_share"]
    assert abs(sum(shares.values()) - 1) < 0.01 and shares["matmul"] > 0
    assert r["mlp_matmul"]["shape"] == [2 * 36, 16, 64] and r["bound"].startswith(f"{r['fraction_of_peak']:.0%}")
    assert "skipped" in data["samplers"]["note"] and "judge" not in data and "torch" in data["versions"]
    assert "bare step" in res.output and "of the" in res.output


@pytest.mark.slow
def test_bench_loop_ratio_and_judge(tmp_path):
    """The real loop (`neurodit train` in a child process, phantom cohort) against the bare step of the
    same run, the threads the loop chose, and the judge at N and 4N volumes."""
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--preset", str(_preset(tmp_path)), "--steps", "3", "--batch-size", "2",
                                   "--sample-steps", "2", "--loop-steps", "4", "--rounds", "2", "--no-judge-2mm",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    _check_machine(data)
    (r,) = data["results"]
    assert r["subject"] == "run" and len(r["loop"]) == len(r["bare_rounds"]) == 2
    for lp in r["loop"]:
        assert lp["steps"] == 4 and lp["step_seconds"]["n"] == 2 and lp["s_per_step"] > 0
        assert lp["threads"] >= 1 and lp["batch_size"] == 2 and lp["peak_rss_mb"] > 50
    assert r["loop_ratio"] > 0 and r["loop_ratio_best"] > 0 and len(r["loop_ratio_rounds"]) == 2
    assert r["threads"] == r["loop"][0]["threads"] == r["peak_threads"]
    rows = data["judge"]["rows"]
    assert [x["n_synthetic"] for x in rows] == [10, 40] and all(x["vmhwm_mb"] > 50 for x in rows)
    assert "loop speed / bare speed" in res.output and "judge on 32x32x32" in res.output
    assert "judge_2mm" not in data and set(data["sections_s"]) == {"generators", "judge"}


@pytest.mark.slow
def test_bench_sampler_table_on_a_trained_run(tmp_path):
    """`--run` + `--real`: one row per sampler and step count with seconds per volume, C2ST AUC per view
    and the Fréchet ratio (a flow run: Euler / Heun rows)."""
    from neurodit.bench.samplers import SAMPLER_GRID, bench_samplers, network_calls
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import export_prepared, prepare
    from neurodit.data.split import split_cohort

    preset = _preset(tmp_path, grid_shape=[16, 16, 16])
    cohort = make_phantom_cohort("camcan", 20, tmp_path / "c", seed=1, voxel_size=6.0)
    split_cohort(cohort, tmp_path / "c-train", tmp_path / "c-held", 0.4, seed=0)
    train = prepare(tmp_path / "c-train", tmp_path / "prep", shape=(16, 16, 16))
    real = export_prepared(prepare(tmp_path / "c-held", tmp_path / "hprep", shape=(16, 16, 16)), tmp_path / "real")
    res = CliRunner().invoke(app, ["train", str(train), "--out", str(tmp_path / "run"), "--preset", str(preset),
                                   "--objective", "flow", "--max-steps", "3", "--batch-size", "4",
                                   "--set", "preview_per_class=0"])
    assert res.exit_code == 0, res.output
    table = bench_samplers(tmp_path / "run", real, tmp_path / "work", n=6, quick=True,
                           grid=(("euler", 2), ("heun", 2)))
    assert table["objective"] == "flow" and table["floor_set"] and table["note"] is None
    assert [(x["sampler"], x["steps"], x["network_calls"]) for x in table["rows"]] == [("euler", 2, 2), ("heun", 2, 3)]
    for row in table["rows"]:
        assert row["s_per_volume"] > 0 and set(row["c2st_auc"]) == {"voxel", "texture", "cnn"}
        assert all(0 <= a <= 1 for a in row["c2st_auc"].values()) and row["frechet_ratio"] > 0
    assert [k for k, _ in SAMPLER_GRID["flow"]].count("heun") == 3 and network_calls("heun", 10) == 19
    assert table["reference"] is None  # no 250-step row in this grid: nothing to hold the rows against


def test_sampler_rows_held_against_the_250_step_one():
    """Each judged row's gap is its largest C2ST AUC difference from the 250-step row; the cheap rows (<= 25
    calls) within 0.03 in every view are named, the others not."""
    from neurodit.bench.samplers import against_reference

    def row(kind, steps, calls, voxel, texture, cnn):
        return {"sampler": kind, "steps": steps, "network_calls": calls,
                "c2st_auc": {"voxel": voxel, "texture": texture, "cnn": cnn}}

    rows = [row("ddpm", 250, 250, 0.70, 0.90, 0.80), row("dpm", 10, 10, 0.72, 0.92, 0.85),
            row("dpm", 20, 20, 0.69, 0.93, 0.81), row("ddim", 50, 50, 0.70, 0.90, 0.80)]
    res = against_reference(rows)
    assert res["reference"] == "ddpm 250" and res["cheap_within_tolerance"] == ["dpm 20"]
    assert [r["auc_gap"] for r in rows] == [0.0, 0.05, 0.03, 0.0]  # ddim 50: no gap, but 50 calls is not cheap


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


def test_sampler_lines_print_the_frechet_ratio_or_say_raw():
    """The sampler table prints the Fréchet distance as a ratio to the floor; without a floor the raw
    figure, said so; without feature metrics a dash."""
    from neurodit.bench import format_report

    machine = {"gpu": None, "cpu_model": "cpu", "affinity": 2, "torch_cpu_capability": "AVX2",
               "native_bf16": False, "peak_gflops": {"fp32": 100.0}, "peak_threads": 2}

    def row(sampler, **judge):
        return {"sampler": sampler, "steps": 10, "network_calls": 10, "s_per_volume": 0.5,
                "c2st_auc": {"voxel": 0.6}, **judge}

    rows = [row("ddim", frechet=0.42, frechet_ratio=4.04), row("dpm", frechet=0.4213, frechet_ratio=None),
            row("heun")]
    text = format_report({"machine": machine, "results": [], "samplers": {
        "run": "r", "objective": "flow", "guidance": 1.5, "n": 4, "rows": rows}})
    lines = [ln for ln in text.splitlines() if "s/volume" in ln]
    assert lines[0].endswith("Fréchet ratio 4.04")
    assert lines[1].endswith("Fréchet 0.421 (raw: no real-vs-real floor)")
    assert lines[2].endswith("Fréchet -")
