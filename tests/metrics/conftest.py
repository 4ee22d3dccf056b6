"""Small smooth brain-like MD volumes (mm²/s) for the metric tests: seeded, 16-32 voxels a side."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def brain_volumes(n: int, shape=(24, 24, 24), seed: int = 0, field_sd: float = 0.15e-3) -> np.ndarray:
    """(n, D, H, W) float32 MD maps: ellipsoid brain (WM core 0.7e-3, GM shell 0.9e-3, CSF 'ventricle'
    3e-3 mm²/s, 0 outside) plus a subject-specific smooth random field (sd ``field_sd``) and a
    little voxel noise, so subjects differ as smooth fields do (and slices of one subject cohere)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = np.sqrt((zz / 0.85) ** 2 + (yy / 0.9) ** 2 + (xx / 0.8) ** 2)
    brain = r < 1.0
    base = np.where(r < 0.65, 0.7e-3, 0.9e-3)
    vent = ((zz / 0.18) ** 2 + (yy / 0.3) ** 2 + (xx / 0.25) ** 2) < 1.0
    base = np.where(vent, 3.0e-3, base)
    out = np.empty((n, *shape), dtype=np.float32)
    for i in range(n):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.5)
        field *= field_sd / field.std()
        vol = base + field + rng.normal(0, 0.02e-3, shape)
        out[i] = np.where(brain, np.clip(vol, 1e-5, None), 0.0)
    return out


@pytest.fixture(scope="session")
def cohorts() -> dict[str, np.ndarray]:
    """Training, held-out real and a second held-out set, all independent draws of one population."""
    return {"train": brain_volumes(24, seed=1), "heldout": brain_volumes(24, seed=2),
            "heldout2": brain_volumes(24, seed=3)}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The metric kernels are many small tensor ops: on a shared 2-core machine one thread is
    several times faster than two competing ones (measured). Restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> dict:
    """One 36-subject camcan phantom cohort at 6 mm (33x39x32), split by participant into
    train / heldout / fresh (12 each). Returns the folder, the arrays (mm²/s), ids and the affine."""
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.phantom import make_phantom_cohort

    folder = make_phantom_cohort("camcan", 36, tmp_path_factory.mktemp("phantom") / "camcan", seed=0,
                                 voxel_size=6.0)
    cohort = read_cohort(folder)
    vols, grid = load_volumes(cohort)
    ids = list(cohort.table["participant_id"])
    parts = {"train": slice(0, 12), "heldout": slice(12, 24), "fresh": slice(24, 36)}
    return {"folder": folder, "table": cohort.table, "grid": grid, "affine": grid.affine,
            **{k: vols[s] for k, s in parts.items()}, "ids": {k: ids[s] for k, s in parts.items()}}
