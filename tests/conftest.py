"""Shared fixtures. ``tests/`` is put on sys.path so test modules can ``from helpers import ...``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights in tests
if "NEURODIT_CACHE" not in os.environ:  # the judge's encoder cache: never the user's ~/.cache in tests
    import tempfile

    os.environ["NEURODIT_CACHE"] = tempfile.mkdtemp(prefix="neurodit-test-cache-")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import write_tiny_cohort  # noqa: E402


@pytest.fixture
def make_tiny_cohort(tmp_path):
    """Factory: ``make_tiny_cohort(name="cohort", **kw)`` writes ``tmp_path/name`` via
    :func:`helpers.write_tiny_cohort` (kw: n, shape, voxel_size, seed, sessions, gz, diagnosis,
    flip_x, path_column) and returns its path."""

    def make(name: str = "cohort", **kw):
        return write_tiny_cohort(tmp_path / name, **kw)

    return make


@pytest.fixture
def tiny_cohort(make_tiny_cohort):
    """A 6-participant cohort folder (sex F/M, age; 24x28x24 voxels at 8 mm, MNI-centred, mm²/s)."""
    return make_tiny_cohort()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one global state per process and refuses a second Accelerator with another precision
    or device flag; tests train many runs in one process with different settings, so each starts clean."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
