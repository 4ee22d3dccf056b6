"""Two processes = one: ``accelerate launch --multi_gpu --num_processes 2 -m neurodit.cli train`` on a
machine without a GPU (two gloo CPU processes) learns what one process learns from the same global batch.

Measured (accelerate 1.15): ``accelerate launch --cpu --num_processes 2`` without a config starts ONE
process (``--cpu`` picks accelerate's simple launcher), as does a config with ``distributed_type:
MULTI_CPU``; ``--multi_gpu`` (torchrun underneath) or ``torchrun`` start two CPU processes that
accelerate runs as ``MULTI_CPU`` over gloo. The test asserts two processes ran (``run.json``).

Sharding rule (neurodit/train/loop.py, ``micro_batch_index``): a step's global batch is
``world * grad_accum`` micro-batches of ``batch_size``; micro-batch g has its own generator and runs on
rank ``g % world``. So 2 processes x batch 2 see exactly the samples, noise and timesteps of 1 process
x batch 2 x ``grad_accum`` 2; the logged loss is the mean over all of them. What differs is only the
float summation order of the gradient (all-reduce mean vs accumulation).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # two gloo processes start, import torch and train (~30-60 s)

SRC = Path(__file__).resolve().parents[2] / "src"
ACCELERATE = Path(sys.executable).parent / "accelerate"
LOSS_RTOL = 1e-5  # per-step relative |loss diff| allowed; measured <= 3.1e-8 (float32 rounding of the mean)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURODIT_TEST_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}")
    return env


def accelerate_launch(nproc: int, *args: str, timeout: int = 500) -> subprocess.CompletedProcess:
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(free_port()), "-m", "neurodit.cli", *args]
    res = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def read_loss(run: Path) -> np.ndarray:
    with (run / "loss.csv").open() as fh:
        return np.array([[float(r["step"]), float(r["loss"]), float(r["lr"])] for r in csv.DictReader(fh)])


def test_two_processes_equal_one(phantom_prep, preset_file, tmp_path):
    from neurodit.io import read_json
    from neurodit.train import resolve_train_config, train_diffusion

    cfg = {"max_steps": 6, "batch_size": 2, "num_threads": 1, "mixed_precision": "fp32", "preview_per_class": 0,
           "log_every": 1, "warmup_steps": 3, "lr": 1e-3, "seed": 11, "preset": str(preset_file),
           "checkpoint_every": 3}
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    two = tmp_path / "two"
    accelerate_launch(2, "train", str(phantom_prep), "--out", str(two), "--config", str(cfg_file))
    assert read_json(two / "run.json")["processes"] == 2
    # one process, same global batch: batch 2 x grad_accum 2
    one = train_diffusion(resolve_train_config(cfg_file, {"grad_accum": 2}, prep_dir=str(phantom_prep),
                                         out=str(tmp_path / "one")))
    a, b = read_loss(one), read_loss(two)
    assert a.shape == b.shape == (6, 3)
    assert np.array_equal(a[:, 0], b[:, 0])
    np.testing.assert_array_equal(a[:, 2], b[:, 2])  # the LR schedule is the 1-process one
    rel = np.abs(a[:, 1] - b[:, 1]) / np.abs(a[:, 1])
    print("per-step relative loss diff, 1 vs 2 processes:", rel.tolist())
    assert rel.max() < LOSS_RTOL, rel
    # the first step's loss sees identical weights and data: only the loss reduction order differs
    assert rel[0] < 1e-6
    wa = load_file(str(one / "checkpoints" / "step-0000006" / "model.safetensors"))
    wb = load_file(str(two / "checkpoints" / "step-0000006" / "model.safetensors"))
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print("max |weight diff| after 6 steps:", worst)
    assert worst < 1e-5  # measured 0.0 on CPU
    assert not torch.equal(wa[next(iter(wa))], torch.zeros_like(wa[next(iter(wa))]))
