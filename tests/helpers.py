"""Test helpers shared by every test module: tiny seeded synthetic cohorts in the input format.

Import with ``from helpers import write_tiny_cohort`` (tests/conftest.py puts tests/ on sys.path) or
use the ``tiny_cohort`` / ``make_tiny_cohort`` fixtures from tests/conftest.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

# MNI152 brain: bounding-box centre and half-extent in mm (nilearn's 2 mm brain mask).
BRAIN_CENTRE_MM = np.array([0.0, -17.0, 5.0])
BRAIN_HALF_MM = np.array([72.0, 89.0, 77.0])
MD_WM, MD_GM, MD_CSF = 0.70e-3, 0.85e-3, 3.0e-3  # mm²/s


def tiny_affine(shape: Sequence[int], voxel_size: float, flip_x: bool = False) -> np.ndarray:
    """RAS affine (or LAS with ``flip_x``) whose voxel box is centred on the MNI152 brain."""
    shape = np.asarray(shape, dtype=float)
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    aff[:3, 3] = BRAIN_CENTRE_MM - (shape - 1) / 2 * voxel_size
    if flip_x:  # same voxels in the world, stored with the x axis reversed (LAS)
        aff[0, 0] = -voxel_size
        aff[0, 3] = BRAIN_CENTRE_MM[0] + (shape[0] - 1) / 2 * voxel_size
    return aff


def tiny_md_volume(shape: Sequence[int], affine: np.ndarray, rng: np.random.Generator,
                   head_scale: float = 1.0, ventricle_scale: float = 1.0, noise: float = 2e-5) -> np.ndarray:
    """A brain-like MD map (X, Y, Z) float32 in mm²/s: an MNI-sized ellipsoid with a grey-matter
    shell (0.85e-3), white-matter core (0.70e-3), ventricles (3.0e-3), a right-hemisphere lesion
    (1.6e-3, centred at x = +40 mm), Gaussian noise, 0 outside."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    world = idx @ affine[:3, :3].T + affine[:3, 3]  # (X, Y, Z, 3) mm
    rel = (world - BRAIN_CENTRE_MM) / (BRAIN_HALF_MM * head_scale)
    r = np.sqrt((rel**2).sum(-1))
    vent = np.sqrt((((world - BRAIN_CENTRE_MM - [0, 5, 10]) / ([18, 30, 14] * np.array(ventricle_scale)))**2)
                   .sum(-1))
    vol = np.where(r < 0.8, MD_WM, MD_GM)
    vol = np.where(vent < 1.0, MD_CSF, vol)
    # A right-hemisphere (x > 0) lesion of raised MD makes left/right orientation testable.
    lesion = np.sqrt(((world - [40.0, -20.0, 10.0]) ** 2).sum(-1)) < 14.0 * head_scale
    vol = np.where(lesion, 1.6e-3, vol)
    vol = vol + rng.normal(0.0, noise, size=vol.shape)
    vol = np.where(r < 1.0, np.clip(vol, 1e-5, None), 0.0)
    return vol.astype(np.float32)


def write_tiny_cohort(out: str | Path, n: int = 6, shape: Sequence[int] = (24, 28, 24), voxel_size: float = 8.0,
                      seed: int = 0, sessions: int = 1, gz: bool = True, diagnosis: bool = False,
                      flip_x: bool = False, path_column: bool = False) -> Path:
    """Write a seeded cohort folder of ``n`` participants (``sessions`` volumes each) and return it.

    participants.tsv has participant_id (``sub-0001``...), sex (F/M alternating), age, and with
    ``diagnosis`` a CN/AD column; ``sessions > 1`` adds session_id (``ses-01``...). Files are named
    ``sub-0001[_ses-01]_md.nii[.gz]`` (or listed in a ``path`` column under ``maps/``). Volumes are
    :func:`tiny_md_volume` on an MNI-centred grid (default 24x28x24 at 8 mm, RAS; LAS with
    ``flip_x``); males have 5% larger heads, AD larger ventricles. Same seed, same arrays.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = tiny_affine(shape, voxel_size, flip_x)
    ext = ".nii.gz" if gz else ".nii"
    header = ["participant_id"] + (["session_id"] if sessions > 1 else []) + ["sex", "age"]
    header += (["diagnosis"] if diagnosis else []) + (["path"] if path_column else [])
    lines = ["\t".join(header)]
    for i in range(n):
        pid = f"sub-{i + 1:04d}"
        sex = "F" if i % 2 == 0 else "M"
        dx = "AD" if (i // 2) % 2 else "CN"
        age = round(float(rng.uniform(20, 85)), 1)
        for s in range(sessions):
            ses = f"ses-{s + 1:02d}" if sessions > 1 else None
            name = f"{pid}{'_' + ses if ses else ''}_md{ext}"
            rel = f"maps/{name}" if path_column else name
            vol = tiny_md_volume(shape, affine, rng, head_scale=1.05 if sex == "M" else 0.97,
                                 ventricle_scale=1.4 if (diagnosis and dx == "AD") else 1.0)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol, affine), out / rel)
            row = [pid] + ([ses] if ses else []) + [sex, str(age)]
            row += ([dx] if diagnosis else []) + ([rel] if path_column else [])
            lines.append("\t".join(row))
    (out / "participants.tsv").write_text("\n".join(lines) + "\n")
    return out


def train_tiny_dit(root, steps: int = 3, **overrides):
    """A ``steps``-step run of a 2-layer pixel DiT (patch 8) on a 12-subject phantom camcan cohort prepared
    at 16^3, in ``root``; returns ``(run_dir, prep_dir)``. ``overrides``: extra TrainConfig flags."""
    import yaml

    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import prepare
    from neurodit.train import resolve_train_config, train_diffusion

    root = Path(root)
    cohort = make_phantom_cohort("camcan", 12, root / "cohort", seed=5, voxel_size=6.0)
    prep = prepare(cohort, root / "prep", shape=(16, 16, 16))
    preset = root / "p.yaml"
    preset.write_text(yaml.safe_dump({"grid_shape": [16, 16, 16], "num_layers": 2, "num_attention_heads": 2,
                                      "attention_head_dim": 16, "patch_size": 8}))
    cfg = resolve_train_config(None, None, prep_dir=str(prep), out=str(root / "run"), preset=str(preset),
                               max_steps=steps, batch_size=4, preview_per_class=0, log_every=1, **overrides)
    return train_diffusion(cfg), prep


def write_labelled_cohort(folder, ds, label_col, synthetic=False):
    """Write a downstream LabelledSet as a cohort folder: 16^3 NIfTI in mm²/s on make_grid((16,16,16))."""
    import pandas as pd

    from neurodit.data.grid import make_grid
    from neurodit.data.normalize import Normalization

    folder.mkdir()
    affine = make_grid(shape=(16, 16, 16)).affine
    rows = []
    for i, (v, y, g) in enumerate(zip(ds.volumes, ds.labels, ds.groups, strict=True)):
        ses = f"ses-{i % 2 + 1}"
        nib.save(nib.Nifti1Image(Normalization().to_physical(v).astype(np.float32), affine),
                 folder / f"{g}_{ses}.nii.gz")
        rows.append({"participant_id": g, "session_id": ses, label_col: ds.classes[y],
                     "synthetic": int(synthetic)})
    pd.DataFrame(rows).to_csv(folder / "participants.tsv", sep="\t", index=False)


def tree_hash(*folders: str | Path) -> str:
    """sha256 over every file's relative path and bytes (and the folder listing) of ``folders``: the "inputs
    untouched / nothing half-written" check, before and after a command in one test on one machine (never a
    digest recorded elsewhere: float output may differ in its last bits between CPU kinds)."""
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            h.update(str(p.relative_to(folder)).encode())
            if p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()
