"""``neurodit sample``: draw synthetic 3D MD volumes from a trained run and write them as a cohort.

Classifier-free guidance (Ho & Salimans 2022) with our own loop over a diffusers scheduler
(``neurodit.train.diffusion.guided_sample``); each mosaic is decoded (latent presets), untiled
(``neurodit.tiling.mosaic_to_volume``), mapped back to mm²/s (``Normalization.to_physical``), set to 0
outside the training brain mask and written as NIfTI on the prepare grid's affine. The output folder
is a cohort folder (docs/ARCHITECTURE.md, "Input format") that ``neurodit prepare`` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from neurodit.config import from_dict
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_text, read_json, write_run_info
from neurodit.train.data import LabelSpec
from neurodit.train.diffusion import (
    SAMPLERS,
    DiffusionConfig,
    guided_sample,
    make_noise_scheduler,
    make_sampler,
)

SYN_PREFIX = "syn-"  # real ids are sub-*: synthetic ids can never collide with them


def parse_label(items: list[str] | str | None) -> dict[str, str]:
    """``["sex=F"]`` or ``"sex=F,age_bin=<50"`` -> ``{"sex": "F", ...}``."""
    if not items:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            if "=" not in part:
                raise NeuroditError(f"--label '{part}' must look like column=value, e.g. sex=F")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class TrainedRun:
    """A RUN_DIR opened for sampling: EMA model, labels, tiling, grid/normalisation, mask, diffusion."""

    def __init__(self, run_dir: str | Path, device: torch.device | None = None):
        from diffusers import DiTTransformer2DModel

        from neurodit.data.grid import Grid
        from neurodit.data.normalize import Normalization
        from neurodit.models import ModelPreset
        from neurodit.tiling import TilingSpec

        self.path = Path(run_dir)
        need = ("model/config.json", "labels.json", "prepare.json", "tiling.json", "train_config.yaml",
                "preset.json")
        missing = [f for f in need if not (self.path / f).is_file()]
        if missing:
            raise NeuroditError(f"not a finished neurodit run (missing {', '.join(missing)})", self.path)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.labels = LabelSpec.from_dict(read_json(self.path / "labels.json"), self.path / "labels.json")
        self.spec = TilingSpec.from_dict(read_json(self.path / "tiling.json"), self.path / "tiling.json")
        prep = read_json(self.path / "prepare.json")
        try:
            self.grid = Grid.from_dict(prep["grid"])
            self.norm = Normalization.from_dict(prep["normalization"])
        except (KeyError, TypeError) as exc:
            raise NeuroditError(f"missing or bad key {exc}", self.path / "prepare.json") from exc
        self.preset = ModelPreset.from_dict(read_json(self.path / "preset.json"))
        cfg = yaml.safe_load((self.path / "train_config.yaml").read_text()) or {}
        self.train_config = cfg
        self.diffusion = from_dict(DiffusionConfig, cfg.get("diffusion", {}), "diffusion")
        mask_file = self.path / "mask.npy"
        self.mask = np.load(mask_file, allow_pickle=False) if mask_file.is_file() else None
        self.model = DiTTransformer2DModel.from_pretrained(str(self.path / "model")).to(self.device).eval()
        if int(self.model.config.num_embeds_ada_norm) != self.labels.num_classes:
            raise NeuroditError(f"model has {self.model.config.num_embeds_ada_norm} classes but labels.json "
                                f"lists {self.labels.num_classes}", self.path / "model")
        self.codec = None

    def attach_vae(self, vae=None) -> None:
        """Latent presets: decode with ``vae`` (tests) or the preset's VAE."""
        from neurodit.models import LatentCodec, load_vae

        if self.preset.space != "latent":
            return
        if vae is None:
            vae = load_vae(self.preset.vae, self.preset.vae_subfolder)
        self.codec = LatentCodec(vae.to(self.device), scale=self.preset.latent_scale)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = int(self.model.config.in_channels)
        s = int(self.model.config.sample_size)
        return (c, s, s)

    def to_volumes(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, S, S) model outputs -> (B, D, H, W) float32 volumes in mm²/s (0 outside the mask)."""
        from neurodit.tiling import mosaic_to_volume

        mos = self.codec.decode(x) if self.codec is not None else x
        mos = mos[:, 0].clamp(-1.0, 1.0).float().cpu().numpy()  # (B, M, M)
        vol = np.asarray(mosaic_to_volume(mos, self.spec), dtype=np.float32)  # (B, D, H, W) model range
        md = self.norm.to_physical(np.clip(vol, -1.0, 1.0)).astype(np.float32)
        md[md < self.norm.vmin] = self.norm.vmin
        if self.mask is not None:
            md[:, ~self.mask] = 0.0
        return md


def sample(run_dir: str | Path, n: int, out: str | Path, *, label: dict[str, str] | list[str] | None = None,
           steps: int = 25, guidance: float = 2.0, scheduler: str = "ddim", seed: int = 0,
           batch_size: int = 16, overwrite: bool = False, device: str | None = None, vae=None,
           progress: bool = True) -> Path:
    """Write ``n`` synthetic volumes of RUN_DIR's model to the cohort folder ``out``; returns ``out``.

    Classes: ``label`` (e.g. ``{"sex": "F"}``) keeps the matching classes; without it, samples cycle
    through all classes (balanced). Same ``seed`` -> same volumes, whatever ``batch_size``: the initial
    noise of sample i is the i-th draw of one seeded generator, and DDIM/DPM-Solver++ are deterministic
    (DDPM draws its step noise from the same generator, so it is reproducible for a fixed batch size).
    """
    from tqdm.auto import tqdm

    from neurodit.data.cohort import write_nifti

    if n < 1:
        raise NeuroditError(f"--n must be >= 1, got {n}")
    if steps < 1 or batch_size < 1:
        raise NeuroditError("--steps and --batch-size must be >= 1")
    if scheduler not in SAMPLERS:
        raise NeuroditError(f"--scheduler must be one of {', '.join(SAMPLERS)}, got {scheduler!r}")
    run = TrainedRun(run_dir, torch.device(device) if device else None)
    run.attach_vae(vae)
    wanted = parse_label(label) if not isinstance(label, dict) else label
    classes = run.labels.select(wanted) if wanted else list(range(run.labels.num_classes))
    class_of = [classes[i % len(classes)] for i in range(n)]
    sampler = make_sampler(scheduler, make_noise_scheduler(run.diffusion))
    autocast = torch.bfloat16 if run.device.type == "cuda" and torch.cuda.is_bf16_supported() else None

    noise_gen = torch.Generator().manual_seed(int(seed))  # CPU: same numbers on every device
    step_gen = torch.Generator(device=run.device).manual_seed(int(seed) + 1)
    rows: list[dict[str, Any]] = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        batches = range(0, n, batch_size)
        for start in tqdm(batches, desc="sample", disable=not progress):
            ids = class_of[start:start + batch_size]
            y = torch.tensor(ids, dtype=torch.long, device=run.device)
            x_init = torch.randn((len(ids), *run.input_shape), generator=noise_gen).to(run.device)
            x = guided_sample(run.model, sampler, y, run.labels.null_class, run.input_shape, steps=steps,
                              guidance=guidance, generator=step_gen, autocast_dtype=autocast, init=x_init)
            for k, vol in enumerate(run.to_volumes(x)):
                pid = f"{SYN_PREFIX}{start + k + 1:06d}"
                write_nifti(vol, run.grid.affine, tmp / f"{pid}.nii.gz")
                rows.append({"participant_id": pid, **run.labels.class_values(ids[k]), "synthetic": 1})
        table = pd.DataFrame(rows)
        atomic_write_text(tmp / "participants.tsv", table.to_csv(sep="\t", index=False))
        write_run_info(tmp, {"run_dir": str(Path(run_dir).resolve()), "n": n, "label": wanted,
                             "steps": steps, "guidance": guidance, "scheduler": scheduler,
                             "batch_size": batch_size}, seed, classes=[run.labels.classes[c] for c in classes])
    return Path(out)
