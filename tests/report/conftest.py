"""Report-test fixtures; the stage-folder writers live in report_stages.py (beside this file)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_stages import (  # noqa: E402
    METRICS,
    RESULTS,
    SHAPE,
    VOXEL,
    png_bytes,
    write_synthetic_cohort,
    write_train_run,
)

from helpers import write_tiny_cohort  # noqa: E402
from neurodit.io import write_json, write_run_info  # noqa: E402


@pytest.fixture
def stage_dirs(tmp_path) -> dict[str, Path]:
    """Every kind of stage folder under one demo root ``tmp_path/demo``; returns name -> path."""
    root = tmp_path / "demo"
    real = write_tiny_cohort(root / "camcan", n=6, shape=SHAPE, voxel_size=VOXEL, seed=0)
    syn = write_synthetic_cohort(root / "synthetic")
    run = write_train_run(root / "run")
    ev = root / "eval"
    ev.mkdir()
    write_json(ev / "metrics.json", METRICS)
    for i, name in enumerate(("msssim", "memorization", "mosaics")):
        (ev / f"{name}.png").write_bytes(png_bytes(i))
    ds = root / "downstream"
    ds.mkdir()
    write_json(ds / "results.json", RESULTS)
    (ds / "runs.csv").write_text("task,arm,seed,fold,balanced_accuracy\nsex,sex/real,0,0,0.70\n"
                                 "sex,sex/real+synthetic,0,0,0.71\n")
    (ds / "arms.png").write_bytes(png_bytes(2))
    write_run_info(ds, {"arch": "small"}, seed=0)
    write_json(root / "demo.json", {"quick": True, "timings_s": {"phantom": 1.2, "train": 30.5},
                                    "commands": {"phantom": "neurodit phantom --cohort camcan --n 6",
                                                 "train": "neurodit train prep --out run --preset tiny"}})
    return {"root": root, "real": real, "synthetic": syn, "train": run, "eval": ev, "downstream": ds}
