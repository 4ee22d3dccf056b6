"""Training checkpoints that survive ``kill -9``: ``RUN_DIR/checkpoints/step-NNNNNNN/``.

One checkpoint holds everything a resumed run needs to continue bit-identically (on CPU) to an
uninterrupted one with the same seed (docs/ARCHITECTURE.md, "Generative core"):

- ``model.safetensors``: the (unwrapped) model's state dict;
- ``ema.safetensors``: the EMA shadow parameters, ``"0"`` .. ``"P-1"`` in ``model.parameters()`` order;
- ``optimizer.pt``: the optimiser state dict (AdamW moments and step counts), read back with
  ``torch.load(weights_only=True)``: tensors and numbers only, nothing is unpickled;
- ``rng.safetensors``: the torch CPU (and CUDA) RNG states of the main process (the loop draws its
  batches, noise and timesteps from per-step generators, ``loop._seeded``; this is for anything else);
- ``loss.json``: the logged loss rows up to this step and the losses of the unfinished log window
  (so ``loss.csv`` continues exactly);
- ``state.json``, written last: the step, the EMA step, the LR scheduler's state, and the sha256 of
  every other file above.

The folder is written into a temporary sibling and renamed into place (``neurodit.io.atomic_dir``): a
kill during the write leaves a ``.step-*.partial`` folder that is never read and is removed on resume.
On resume every file is checked against the checksums in ``state.json``; a truncated or corrupt
checkpoint is skipped with a warning and the one before it is used.

Test hook (not for users): ``NEURODIT_TEST_PAUSE_AT=step:<k>`` (inside optimiser step k, after the
backward pass, before the update) or ``NEURODIT_TEST_PAUSE_AT=checkpoint-write:<k>`` (while
checkpoint k is half written: model and EMA files written, optimiser and ``state.json`` not yet) makes
the main process write the marker file ``NEURODIT_TEST_PAUSE_MARKER`` (default
``RUN_DIR/.neurodit-test-paused``) and sleep (``NEURODIT_TEST_PAUSE_SECONDS``, default 300), so a test
can ``SIGKILL`` it at exactly that moment (tests/train/test_resume_kill.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.pt", "rng.safetensors", "loss.json")
STATE_FILE = "state.json"
FORMAT = 2  # 1: accelerate's save_state folders (pickled RNG states), no longer read

PAUSE_ENV, MARKER_ENV, SECONDS_ENV = "NEURODIT_TEST_PAUSE_AT", "NEURODIT_TEST_PAUSE_MARKER", \
    "NEURODIT_TEST_PAUSE_SECONDS"


def test_pause(event: str, step: int, run_dir: Path) -> None:
    """The test hook (module docstring): pause at ``event:step`` when ``NEURODIT_TEST_PAUSE_AT`` says so."""
    if os.environ.get(PAUSE_ENV) != f"{event}:{step}":
        return
    marker = Path(os.environ.get(MARKER_ENV) or Path(run_dir) / ".neurodit-test-paused")
    marker.write_text(f"{event}:{step} pid {os.getpid()}\n")
    time.sleep(float(os.environ.get(SECONDS_ENV, "300")))


test_pause.__test__ = False  # not a pytest test, despite its name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every complete-looking checkpoint (a ``state.json`` inside), oldest first."""
    out = []
    for p in (Path(run_dir) / "checkpoints").glob("step-*"):
        if p.is_dir() and (p / STATE_FILE).is_file():
            try:
                out.append((int(p.name.split("-")[1]), p))
            except ValueError:
                continue
    return sorted(out)


def remove_partial(run_dir: Path) -> None:
    """Remove ``.step-*.partial`` folders left by a kill during a checkpoint write."""
    for p in (Path(run_dir) / "checkpoints").glob(".step-*.partial"):
        shutil.rmtree(p, ignore_errors=True)


def verify(ckpt: Path) -> str | None:
    """None when every file of ``ckpt`` matches the sha256 in its ``state.json``; else why not."""
    try:
        state = read_json(ckpt / STATE_FILE)
    except NeuroditError as exc:
        return f"unreadable {STATE_FILE} ({exc})"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"not a format-{FORMAT} checkpoint (written by an older neurodit)"
    sums = state.get("files") or {}
    for name in CHECKPOINT_FILES:
        f = ckpt / name
        if not f.is_file():
            return f"{name} is missing"
        if sums.get(name) != sha256_file(f):
            return f"{name} does not match its sha256 in {STATE_FILE} (truncated or corrupt)"
    return None


def save(ckpt: Path, *, model: torch.nn.Module, optimizer, lr_sched, ema, step: int,
         loss_rows: list[dict[str, Any]], run_dir: Path, pending: list[float] | None = None,
         mixed_precision: str | None = None) -> Path:
    """Write checkpoint ``ckpt`` (main process only; ``model`` unwrapped) atomically; returns ``ckpt``.
    ``mixed_precision`` (accelerate's name) is kept in ``state.json``: a resumed run goes on in it."""
    with atomic_dir(ckpt, overwrite=True) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
                  str(tmp / "ema.safetensors"))
        test_pause("checkpoint-write", step, run_dir)  # half written: a kill here must lose nothing
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, str(tmp / "rng.safetensors"))
        (tmp / "loss.json").write_text(json.dumps({"rows": loss_rows, "pending": list(pending or [])}))
        write_json(tmp / STATE_FILE, {
            "format": FORMAT, "step": int(step), "ema_optimization_step": int(ema.optimization_step),
            "lr_scheduler": lr_sched.state_dict(), "mixed_precision": mixed_precision,
            "files": {name: sha256_file(tmp / name) for name in CHECKPOINT_FILES}})
    return ckpt


def saved_precision(ckpt: Path) -> str | None:
    """The precision checkpoint ``ckpt`` was trained in (None for a checkpoint older than the record)."""
    return read_json(ckpt / STATE_FILE).get("mixed_precision")


def load(ckpt: Path, *, model: torch.nn.Module, optimizer, lr_sched,
         ema) -> tuple[int, list[dict[str, Any]], list[float]]:
    """Load a verified checkpoint into ``model`` (unwrapped), ``optimizer``, ``lr_sched``, ``ema`` and
    the torch RNG; returns ``(step, loss_rows, pending)`` (``pending``: losses of the unfinished log
    window)."""
    state = read_json(ckpt / STATE_FILE)
    device = next(model.parameters()).device
    weights = load_file(str(ckpt / "model.safetensors"), device=str(device))
    model.load_state_dict(weights, strict=True)
    shadow = load_file(str(ckpt / "ema.safetensors"))
    if len(shadow) != len(ema.shadow_params):
        raise NeuroditError(f"EMA has {len(shadow)} tensors, model {len(ema.shadow_params)}", ckpt)
    with torch.no_grad():
        for i, p in enumerate(ema.shadow_params):
            p.copy_(shadow[str(i)].to(p.device))
    ema.optimization_step = int(state["ema_optimization_step"])
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    lr_sched.load_state_dict(state["lr_scheduler"])
    rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    losses = json.loads((ckpt / "loss.json").read_text())
    return int(state["step"]), losses["rows"], [float(v) for v in losses["pending"]]


def latest_valid(checkpoints: list[tuple[int, Path]], warn: bool = True) -> tuple[int, Path] | None:
    """The newest checkpoint whose files match their checksums; each bad newer one is skipped with a
    warning naming the file and the problem."""
    for step, path in reversed(checkpoints):
        why = verify(path)
        if why is None:
            return step, path
        if warn:
            log.warning("checkpoint %s skipped: %s; trying the previous one", path, why)
    return None


__all__ = ["CHECKPOINT_FILES", "FORMAT", "checkpoint_dirs", "latest_valid", "load", "remove_partial", "save",
           "sha256_file", "test_pause", "verify"]
