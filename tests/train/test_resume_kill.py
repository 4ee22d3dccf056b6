"""Resume after a real ``SIGKILL`` of a ``neurodit train`` subprocess is bit-identical on CPU.

Moments (deterministic through the test hook ``NEURODIT_TEST_PAUSE_AT``, neurodit/train/checkpoint.py):
mid-step (step 5, after the backward pass, before the update) and mid-checkpoint-write (checkpoint 4
half written). Then ``neurodit train --resume`` must end with model, EMA and optimiser state equal
tensor by tensor (``torch.equal``) to an uninterrupted run with the same seed, for ``dit`` and
``ddpm3d``. A truncated newest checkpoint is skipped (checksum in ``state.json``) and the previous one
used, still bit-identical.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from neurodit.io import read_json

pytestmark = pytest.mark.slow  # each generator: 4 CLI subprocesses (~10 s of imports each) + 2 runs

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS, EVERY = 6, 2


def _config(tmp: Path, generator: str, preset_file: Path) -> Path:
    cfg = {"max_steps": STEPS, "checkpoint_every": EVERY, "keep_checkpoints": 2, "batch_size": 2,
           "num_threads": 1, "mixed_precision": "fp32", "preview_per_class": 0, "log_every": 1,
           "warmup_steps": 2, "lr": 1e-3, "ema_decay": 0.9, "seed": 7, "generator": generator}
    if generator == "ddpm3d":
        cfg["unet"] = {"channels": [8, 16], "num_res_blocks": 1, "norm_num_groups": 8}
    else:
        cfg["preset"] = str(preset_file)
    path = tmp / f"{generator}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURODIT_TEST_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", **extra)
    return env


def _train_cmd(prep: Path, run: Path, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "neurodit.cli", "train", str(prep), "--out", str(run), "--config", str(cfg),
            *extra]


def _kill_at(moment: str, prep: Path, run: Path, cfg: Path) -> None:
    """Start ``neurodit train``, wait until it pauses at ``moment``, SIGKILL it."""
    marker = run.parent / f"{run.name}.paused"
    proc = subprocess.Popen(_train_cmd(prep, run, cfg), env=_env(NEURODIT_TEST_PAUSE_AT=moment,
                                                               NEURODIT_TEST_PAUSE_MARKER=str(marker)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 400
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"train exited ({proc.returncode}) before {moment}: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        assert time.time() < deadline, f"train never reached {moment}"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    proc.stderr.close()


def _resume(prep: Path, run: Path, cfg: Path) -> subprocess.CompletedProcess:
    res = subprocess.run(_train_cmd(prep, run, cfg, "--resume"), env=_env(), capture_output=True, text=True,
                         timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _final(run: Path) -> Path:
    return run / "checkpoints" / f"step-{STEPS:07d}"


def assert_bit_identical(run: Path, ref: Path) -> None:
    """Model, EMA and optimiser state of the final checkpoints equal tensor by tensor; scheduler and
    loss rows equal; the exported EMA model too."""
    a, b = _final(run), _final(ref)
    for name in ("model.safetensors", "ema.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys() and x
        for k in x:
            assert torch.equal(x[k], y[k]), f"{name}:{k} differs"
    ox, oy = (torch.load(p / "optimizer.pt", weights_only=True) for p in (a, b))
    assert ox["param_groups"] == oy["param_groups"] and ox["state"].keys() == oy["state"].keys()
    for i in ox["state"]:
        for k, v in ox["state"][i].items():
            assert torch.equal(v, oy["state"][i][k]), f"optimizer state {i}.{k} differs"
    sa, sb = read_json(a / "state.json"), read_json(b / "state.json")
    assert sa["lr_scheduler"] == sb["lr_scheduler"] and sa["step"] == sb["step"] == STEPS
    assert (a / "loss.json").read_text() == (b / "loss.json").read_text()
    wx = sorted((run / "model").glob("*.safetensors"))
    wy = sorted((ref / "model").glob("*.safetensors"))
    assert [p.name for p in wx] == [p.name for p in wy] and wx
    for p, q in zip(wx, wy, strict=True):
        x, y = load_file(str(p)), load_file(str(q))
        assert all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module", params=["dit", "ddpm3d"])
def reference(request, phantom_prep, preset_file, tmp_path_factory):
    """An uninterrupted in-process run (same code as the CLI) of ``STEPS`` steps."""
    from neurodit.train import resolve_train_config, train_diffusion

    tmp = tmp_path_factory.mktemp(f"kill-{request.param}")
    cfg_file = _config(tmp, request.param, preset_file)
    ref = train_diffusion(resolve_train_config(cfg_file, None, prep_dir=str(phantom_prep), out=str(tmp / "ref")))
    return request.param, cfg_file, ref, tmp


def test_kill_mid_step_then_resume_is_bit_identical(reference, phantom_prep):
    gen, cfg, ref, tmp = reference
    run = tmp / "mid-step"
    _kill_at("step:5", phantom_prep, run, cfg)
    # killed inside step 5: checkpoints 2 and 4 complete, nothing of step 5 or the export written
    assert [p.name for p in sorted((run / "checkpoints").glob("step-*"))] == ["step-0000002", "step-0000004"]
    assert not (run / "model").exists() and not (run / "run.json").exists()
    _resume(phantom_prep, run, cfg)
    assert read_json(run / "run.json")["resumed_from"] == 4
    assert_bit_identical(run, ref)


def test_kill_mid_checkpoint_write_then_resume_is_bit_identical(reference, phantom_prep):
    gen, cfg, ref, tmp = reference
    run = tmp / "mid-write"
    _kill_at("checkpoint-write:4", phantom_prep, run, cfg)
    ckpts = run / "checkpoints"
    partial = list(ckpts.glob(".step-0000004.*.partial"))
    assert len(partial) == 1 and (partial[0] / "model.safetensors").is_file()
    assert not (partial[0] / "state.json").exists()  # half written
    assert [p.name for p in sorted(ckpts.glob("step-*"))] == ["step-0000002"]
    _resume(phantom_prep, run, cfg)
    assert read_json(run / "run.json")["resumed_from"] == 2
    assert not list(ckpts.glob(".step-*.partial"))  # the half-written folder is cleaned up
    assert_bit_identical(run, ref)


def test_truncated_latest_checkpoint_is_skipped_and_previous_used(reference, phantom_prep, caplog):
    from neurodit.train import resolve_train_config, train_diffusion

    gen, cfg, ref, tmp = reference
    run = tmp / "corrupt"
    train_diffusion(resolve_train_config(cfg, None, prep_dir=str(phantom_prep), out=str(run), max_steps=4))
    victim = run / "checkpoints" / "step-0000004" / ("optimizer.pt" if gen == "dit" else "model.safetensors")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a torn copy
    with caplog.at_level(logging.WARNING, logger="neurodit.train.checkpoint"):
        train_diffusion(resolve_train_config(cfg, None, prep_dir=str(phantom_prep), out=str(run), resume=True))
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "step-0000004" in msg and victim.name in msg and "sha256" in msg
    assert read_json(run / "run.json")["resumed_from"] == 2
    assert_bit_identical(run, ref)


def test_no_valid_checkpoint_is_a_clear_error(reference, phantom_prep, tmp_path):
    from neurodit.errors import NeuroditError
    from neurodit.train import resolve_train_config, train_diffusion
    from neurodit.train.checkpoint import verify

    gen, cfg, ref, tmp = reference
    if gen != "dit":
        pytest.skip("generator-independent")
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ref, run)
    # every checkpoint corrupt: resume refuses, naming the checkpoints folder
    for ck in (run / "checkpoints").glob("step-*"):
        (ck / "ema.safetensors").write_bytes(b"x")
        assert "ema.safetensors" in verify(ck)
    with pytest.raises(NeuroditError, match="passes its checksums"):
        train_diffusion(resolve_train_config(cfg, None, prep_dir=str(phantom_prep), out=str(run), resume=True,
                                       max_steps=8))
