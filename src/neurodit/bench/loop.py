"""The real training loop, timed from outside: ``neurodit train`` in a child process on a small phantom
cohort prepared on the preset's grid, its per-step seconds read back from the run's ``run.json``
(``step_seconds``, written by the loop). ``bench`` imports nothing of ``neurodit.train``
(docs/ARCHITECTURE.md): the command line is the loop's public face, and a child process also gives the
loop's own peak RSS (``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from neurodit.errors import NeuroditError
from neurodit.io import read_json


def prepared_phantom(work: Path, shape: tuple[int, ...], n: int = 24, seed: int = 0) -> Path:
    """A PREP_DIR of ``n`` camcan phantom subjects (drawn at 6 mm, cheap) prepared on ``shape``."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare

    cohort = make_phantom_cohort("camcan", n, work / "phantom", seed=seed, voxel_size=6.0)
    return prepare(cohort, work / "prep", shape=shape)


def time_loop(prep_dir: Path, run_dir: Path, *, generator: str, preset: str, steps: int,
              batch_size: int | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``neurodit train`` for ``steps`` steps (no checkpoint inside the run, no preview) in a child
    process; return the loop's step seconds (``run.json``), precision, threads, wall seconds and the
    child's peak RSS (MB). ``overrides``: more ``--set`` keys (TrainConfig)."""
    sets = {"checkpoint_every": 0, "preview_per_class": 0, "log_every": max(1, steps), **(overrides or {})}
    cmd = [sys.executable, "-m", "neurodit.cli", "train", str(prep_dir), "--out", str(run_dir),
           "--generator", generator, "--preset", preset, "--max-steps", str(steps), "--overwrite"]
    cmd += ["--batch-size", str(batch_size)] if batch_size else []
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise NeuroditError(f"bench: the training loop failed: {proc.stderr.strip()[-2000:]}", run_dir)
    info = read_json(run_dir / "run.json")
    if not info.get("step_seconds"):
        raise NeuroditError("bench: run.json has no step_seconds (a loop older than this bench?)", run_dir)
    return {"steps": steps, "s_per_step": info["step_seconds"]["median"], "step_seconds": info["step_seconds"],
            "mixed_precision": info.get("mixed_precision"), "threads": info.get("threads"),
            "batch_size": info["config"]["batch_size"], "wall_s": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}
