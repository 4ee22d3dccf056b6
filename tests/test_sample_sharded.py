"""``neurodit sample`` sharded over 2 processes (``accelerate launch --multi_gpu --num_processes 2``, which
starts them through torchrun's launcher: RANK, WORLD_SIZE; CPU processes over gloo here) writes every
requested subject exactly once and the same volumes as 1 process.

(Plain ``torchrun ... -m neurodit.cli sample --n 5`` fails in torchrun's own argument parser: ``--n`` is
an ambiguous abbreviation of its options; accelerate's parser does not abbreviate.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.slow  # two torchrun launches of 2 processes (~15 s of imports each)

SRC = Path(__file__).resolve().parents[1] / "src"
ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step run of a 2-layer pixel DiT on a 12-subject phantom camcan cohort (16^3 grid)."""
    from helpers import train_tiny_dit

    return train_tiny_dit(tmp_path_factory.mktemp("sharded"), steps=2, mixed_precision="fp32")[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_sample(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(_free_port()), "-m", "neurodit.cli", "sample", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    if check:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def _volumes(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj, dtype=np.float32) for p in sorted(folder.glob("syn-*.nii.gz"))}


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])  # ddpm: step noise per batch, not per shard
def test_two_process_sample_equals_one(run_dir, tmp_path, scheduler):
    import torch

    from neurodit.sample import sample_diffusion

    args = ["--n", "5", "--steps", "3", "--seed", "4", "--batch-size", "2", "--scheduler", scheduler]
    _launch_sample(str(run_dir), "--out", str(tmp_path / "two"), *args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sample_diffusion(run_dir, 5, tmp_path / "one", steps=3, seed=4, batch_size=2, scheduler=scheduler,
               progress=False)
    finally:
        torch.set_num_threads(threads)
    two, one = _volumes(tmp_path / "two"), _volumes(tmp_path / "one")
    # every subject exactly once (3 batches: rank 0 wrote 1 and 3, rank 1 batch 2)
    assert list(two) == [f"syn-{i:06d}.nii.gz" for i in range(1, 6)] == list(one)
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    assert len({v.tobytes() for v in two.values()}) == 5  # five different volumes, not one repeated
    t1 = pd.read_csv(tmp_path / "one" / "participants.tsv", sep="\t")
    t2 = pd.read_csv(tmp_path / "two" / "participants.tsv", sep="\t")
    pd.testing.assert_frame_equal(t1, t2)
    # nothing left beside the cohort: no shard folder, no temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_sharded_sample_refuses_non_empty_out_on_every_rank(run_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = _launch_sample(str(run_dir), "--n", "3", "--steps", "2", "--out", str(out), check=False)
    assert res.returncode != 0 and "not empty" in res.stdout + res.stderr  # no hang at a barrier
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
