"""Tiny in-memory cohorts with a planted effect for the downstream tests (seeded, 16^3 volumes)."""

from __future__ import annotations

import numpy as np
import pytest

from neurodit.downstream.labelled import LabelledSet


def planted_set(n_participants: int, *, effect: float = 0.4, sessions: int = 1, side: int = 16,
                seed: int = 0, prefix: str = "sub", name: str = "tiny", classes=("F", "M")) -> LabelledSet:
    """Spherical 'brains' (model range, background -1) with white noise; class 1 is brighter by
    ``effect`` in one 4^3 block. ``sessions`` volumes per participant (same label, new noise)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:side, :side, :side] - (side - 1) / 2
    brain = (zz**2 + yy**2 + xx**2) <= (0.45 * side) ** 2  # (D, H, W) bool
    labels_p = np.arange(n_participants) % 2
    rng.shuffle(labels_p)
    vols, labels, groups = [], [], []
    c = side // 2
    for i, y in enumerate(labels_p):
        for _ in range(sessions):
            v = np.full((side, side, side), -1.0, np.float32)
            v[brain] = -0.4 + 0.1 * rng.standard_normal(brain.sum())
            if y:
                v[c - 4:c, c - 4:c, c:c + 4] += effect  # planted effect, inside the sphere
            vols.append(v)
            labels.append(int(y))
            groups.append(f"{prefix}-{i:04d}")
    return LabelledSet(np.stack(vols).astype(np.float32), np.array(labels), np.array(groups), classes, name)


@pytest.fixture
def make_set():
    return planted_set


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's 2 cores are shared: one thread per test process avoids oversubscription
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
