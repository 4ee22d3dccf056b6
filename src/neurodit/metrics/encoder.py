"""The judge's fixed 3D encoder: the project's own (trained on the real training volumes) or a user's.

Image-generation papers judge samples in the feature space of a fixed network (FID and the like; the
metrics themselves are in :mod:`neurodit.metrics.features`). For 3D brain MRI no encoder can be
downloaded here, so:

- by default the project trains **its own encoder** on the *real training* volumes only
  (:func:`train_encoder`): the small 3D CNN (``neurodit.models.small_cnn.SmallCNN``) with a
  ``dim``-wide last stage, trained to predict sex and age and, always, a coarse 4x4x4 version of its own
  input and of its gradient magnitude (self-supervised terms that keep the features sensitive to the
  whole image and to its texture, and the only terms when a cohort has no labels). Features = the
  globally pooled penultimate layer, (N, dim). It is saved as ``encoder.safetensors`` + ``encoder.json``
  (architecture, training-data hash, weights sha256, versions) and reused through :func:`get_encoder`
  whenever the training set is the same, so numbers are comparable across generators judged against
  one training set;
- a user's encoder enters through :func:`load_encoder`: a TorchScript file, or safetensors weights
  with a JSON config (our format; MONAI ResNets, e.g. MedicalNet / Med3D weights; docs/JUDGE.md).
  Pickled checkpoints are never loaded.

The own encoder is deterministic, so that two evaluations of the same folders on one machine give the
same numbers, also when the cache was cleared between them: one seed for the initial weights and every
draw of training, float32 throughout (no autocast, no bf16: :func:`train_encoder` and
:meth:`Encoder.__call__` switch autocast off), and torch's deterministic algorithms during training
(:func:`deterministic_torch`). Its cache key (:func:`cache_key`) covers the training data's sha256, every
resolved training setting, the normalisation and :data:`FEATURE_VIEW`, the version of the whole feature
definition (bump it when the training recipe or the feature view of :mod:`neurodit.metrics.features`
changes, so that no stale encoder is reused). Across machines the float arithmetic (CPU kernels, thread
counts) still differs, so the weights do too: read the Fréchet distance as a ratio to its real-vs-real
floor, which :mod:`neurodit.metrics.features` reports beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError
from neurodit.io import (
    atomic_dir,
    atomic_write_bytes,
    package_versions,
    seed_everything,
    write_json,
    write_run_info,
)

__all__ = ["Encoder", "EncoderNet", "train_encoder", "load_encoder", "get_encoder", "training_data_hash",
           "cache_key", "deterministic_torch", "FORMAT", "FEATURE_VIEW", "WEIGHTS_FILE", "CONFIG_FILE"]

FORMAT = "neurodit.encoder/1"
# the version of the judge's feature definition: the own encoder's training recipe (deterministic, fp32) and
# the feature view built on it (neurodit.metrics.features: pooled encoder features + texture statistics,
# block-weighted z-scores). Part of the encoder cache key and of every features result.
FEATURE_VIEW = "neurodit.features/2"
WEIGHTS_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder.json"
RESNET_DEPTHS = (10, 18, 34, 50, 101, 152, 200)
INPUT_TRANSFORMS = ("model", "zscore")


# --------------------------------------------------------------------------- networks
class EncoderNet(nn.Module):
    """Feature extractor around a backbone: (B, 1, D, H, W) -> (B, F).

    ``small``: :class:`~neurodit.models.small_cnn.SmallCNN` (its ``head`` is the training head, unused
    for features); features = its global average pool. ``resnet``: a MONAI ResNet (Hara et al. 2018; the
    MedicalNet / Med3D architecture, Chen et al. 2019) built with ``feed_forward=False``, whose forward
    already ends in the global pool.
    """

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.arch = dict(arch)
        name = arch.get("name")
        if name == "small":
            from neurodit.models.small_cnn import SmallCNN

            self.net = SmallCNN(in_channels=1, n_outputs=int(arch["n_outputs"]),
                                channels=tuple(int(c) for c in arch["channels"]), last=int(arch["dim"]),
                                in_pool=int(arch.get("in_pool", 1)))
        elif name == "resnet":
            from monai.networks.nets import resnet

            depth = int(arch.get("depth", 10))
            if depth not in RESNET_DEPTHS:
                raise NeuroditError(f"unknown resnet depth {depth} (known: {RESNET_DEPTHS})")
            kwargs = dict(arch.get("kwargs", {}))
            self.net = getattr(resnet, f"resnet{depth}")(spatial_dims=3, n_input_channels=1,
                                                         feed_forward=False, **kwargs)
        else:
            raise NeuroditError(f"unknown encoder architecture '{name}' (known: small, resnet)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch["name"] == "small":
            return self.net.embed(x)  # (B, dim)
        return self.net(x).flatten(1)  # (B, 512 or 2048)


def _zscore_brain(x: torch.Tensor) -> torch.Tensor:
    """MedicalNet's input normalisation: each volume z-scored over its non-zero (brain) voxels, 0 outside.
    x: (B, 1, D, H, W) in mm²/s."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        brain = x[i] > 0
        if brain.any():
            v = x[i][brain]
            out[i][brain] = (v - v.mean()) / v.std().clamp_min(1e-12)
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- Encoder
class Encoder:
    """A fixed (frozen, eval-mode, CPU) 3D encoder: (B, 1, D, H, W) model-range volumes -> (B, F) features.

    ``info`` is JSON-ready: ``{kind: "own" | "torchscript" | "safetensors", source, sha256 (weights
    file), dim (None for TorchScript until the first call), trained_on: {...}, input}``.
    Calling the object on a (B, 1, D, H, W) tensor returns (B, F) features, so it also fits
    ``neurodit.metrics.mmd.volume_features(encoder=...)``.
    """

    def __init__(self, module: nn.Module, info: dict[str, Any], input_transform: str = "model"):
        if input_transform not in INPUT_TRANSFORMS:
            raise NeuroditError(f"unknown encoder input transform '{input_transform}' "
                                f"(known: {', '.join(INPUT_TRANSFORMS)})")
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.input_transform = input_transform
        self._info = {**info, "input": input_transform}

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    @property
    def dim(self) -> int | None:
        return self._info.get("dim")

    @torch.no_grad()
    def __call__(self, x_model: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) model range [-1, 1] -> (B, F) float32, computed in float32 (autocast off even
        inside a caller's autocast region: features must not depend on who calls)."""
        x = x_model.float()
        if self.input_transform == "zscore":
            x = _zscore_brain(Normalization().to_physical(x.clamp(-1, 1)))
        with torch.autocast(x.device.type, enabled=False):
            out = self.module(x)
        if isinstance(out, (tuple, list)):  # some exported encoders return (features, ...)
            out = out[0]
        return out.reshape(out.shape[0], -1).float()

    def features(self, volumes_mm2s: np.ndarray, norm: Normalization = Normalization(),
                 batch_size: int = 8) -> np.ndarray:
        """(N, D, H, W) volumes in mm²/s (numpy array or memmap) -> (N, F) float64 features.

        Streams ``batch_size`` volumes at a time, so memory is flat in N (beyond the (N, F) result).
        """
        n = len(volumes_mm2s)
        if n == 0 or np.ndim(volumes_mm2s) != 4:
            raise NeuroditError(f"encoder needs (N, D, H, W) volumes with N >= 1, got shape "
                                f"{tuple(np.shape(volumes_mm2s))}")
        out: list[np.ndarray] = []
        for i in range(0, n, batch_size):
            xb = np.asarray(volumes_mm2s[i:i + batch_size], dtype=np.float32)  # (B, D, H, W), copies a slice
            xb = torch.from_numpy(np.ascontiguousarray(norm.to_model(xb), dtype=np.float32))[:, None]
            out.append(self(xb).double().numpy())  # (B, F)
        feats = np.concatenate(out)
        if not np.all(np.isfinite(feats)):
            raise NeuroditError(f"encoder {self._info.get('source')} produced non-finite features")
        if self._info.get("dim") is None:
            self._info["dim"] = int(feats.shape[1])
        elif feats.shape[1] != self._info["dim"]:
            raise NeuroditError(f"encoder {self._info.get('source')} gave {feats.shape[1]} features, "
                                f"its config says {self._info['dim']}")
        return feats


# --------------------------------------------------------------------------- training our own
@dataclasses.dataclass(frozen=True)
class EncoderTraining:
    """Settings of the own encoder (saved in encoder.json; part of the cache key)."""

    dim: int = 32  # feature width: modest, so that N >= F is usual (FID needs a full-rank covariance)
    channels: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    recon_side: int = 4  # the self-supervised target: input average-pooled to recon_side^3
    seed: int = 0


def _ssl_targets(x: torch.Tensor, side: int) -> torch.Tensor:
    """Self-supervised targets of (B, 1, D, H, W) inputs -> (B, 2 side^3): the input average-pooled to
    side^3 cells (anatomy) and its gradient magnitude pooled likewise (texture: smooth, noisy or real)."""
    g = torch.zeros_like(x)
    for ax in (2, 3, 4):  # forward differences, (B, 1, D, H, W) with the last plane 0
        d = torch.diff(x, dim=ax)
        g = g + F.pad(d, [0, 1] if ax == 4 else ([0, 0, 0, 1] if ax == 3 else [0, 0, 0, 0, 0, 1])) ** 2
    return torch.cat([F.adaptive_avg_pool3d(x, side).flatten(1),
                      F.adaptive_avg_pool3d(g.sqrt(), side).flatten(1)], dim=1)


def training_data_hash(volumes_mm2s: np.ndarray, table: Any, mask: np.ndarray | None) -> str:
    """sha256 of the training volumes (float32 bytes, one volume at a time), the mask and the sex/age labels."""
    h = hashlib.sha256()
    h.update(f"{tuple(np.shape(volumes_mm2s))}".encode())
    for i in range(len(volumes_mm2s)):
        h.update(np.ascontiguousarray(volumes_mm2s[i], dtype=np.float32).tobytes())
    if mask is not None:
        h.update(b"mask" + np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes())
    sex, age = _labels(table, len(volumes_mm2s))
    h.update(b"sex" + sex.tobytes() + b"age" + np.nan_to_num(age, nan=-1.0).tobytes())
    return h.hexdigest()


def _labels(table: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(sex (n,) int64: F 0, M 1, missing -1; age (n,) float64, NaN missing) from a cohort table or None."""
    sex = np.full(n, -1, dtype=np.int64)
    age = np.full(n, np.nan)
    if table is None:
        return sex, age
    if len(table) != n:
        raise NeuroditError(f"label table has {len(table)} rows for {n} training volumes")
    if "sex" in table:
        s = table["sex"].astype(object).to_numpy()
        sex = np.where(s == "M", 1, np.where(s == "F", 0, -1)).astype(np.int64)
    if "age" in table:
        age = np.asarray(table["age"], dtype=np.float64)
    return sex, age


def _state_bytes(net: EncoderNet, meta: dict[str, str]) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().contiguous().clone() for k, v in net.net.state_dict().items()}
    return save(state, metadata=meta)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Roll a (B, 1, D, H, W) batch by up to ``max_shift`` voxels per axis, one shift for the whole batch.

    The encoder's augmentation against over-fitting the few training subjects (their features would
    otherwise sit apart from held-out ones)."""
    shifts = [int(s) for s in torch.randint(-max_shift, max_shift + 1, (3,), generator=generator)]
    return torch.roll(x, shifts=shifts, dims=(2, 3, 4))


@dataclasses.dataclass
class _Targets:
    """What the encoder is trained to predict, per training volume (row order of the volumes)."""

    recon: torch.Tensor  # (N, 2 r^3) pooled input + pooled gradient magnitude, standardised per cell
    sex: np.ndarray  # (N,) int64: F 0, M 1, missing -1
    has_age: np.ndarray  # (N,) bool
    age_z: torch.Tensor  # (N,) standardised age, 0 where missing
    age_mu: float
    age_sd: float

    @property
    def use_sex(self) -> bool:
        return bool(len(set(self.sex[self.sex >= 0].tolist())) == 2)  # both classes present, else no sex term

    @property
    def use_age(self) -> bool:
        return bool(self.has_age.sum() > 1)

    def loss(self, out: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Multi-task loss of outputs (B, 2 + 1 + 2 r^3) (sex logits, age, pooled input + texture) for rows idx."""
        loss = F.mse_loss(out[:, 3:], self.recon[idx])
        if self.use_sex and (self.sex[idx] >= 0).any():
            loss = loss + F.cross_entropy(out[:, :2], torch.as_tensor(self.sex)[idx], ignore_index=-1)
        if self.use_age and self.has_age[idx].any():
            sel = torch.as_tensor(self.has_age[idx])
            loss = loss + F.mse_loss(out[sel, 2], self.age_z[idx][sel])
        return loss


def _targets(batch: Any, n: int, table: Any, side: int) -> _Targets:
    """The encoder's training targets; ``batch(idx)`` gives the (B, 1, D, H, W) model-range inputs."""
    sex, age = _labels(table, n)
    # self-supervised targets: (N, 2 r^3) pooled input and pooled gradient magnitude (texture), standardised
    # per cell with the training statistics
    with torch.no_grad():
        recon = torch.cat([_ssl_targets(batch(np.arange(i, min(i + 32, n))), side)
                           for i in range(0, n, 32)]).double()
    recon = ((recon - recon.mean(0)) / recon.std(0).clamp_min(1e-6)).float()
    has_age = np.isfinite(age)
    age_mu = float(age[has_age].mean()) if has_age.any() else 0.0
    age_sd = float(age[has_age].std()) if has_age.sum() > 1 and age[has_age].std() > 0 else 1.0
    age_z = torch.as_tensor(np.where(has_age, (np.nan_to_num(age) - age_mu) / age_sd, 0.0), dtype=torch.float32)
    return _Targets(recon, sex, has_age, age_z, age_mu, age_sd)


@contextlib.contextmanager
def deterministic_torch() -> Iterator[None]:
    """Torch's deterministic algorithms (and cuDNN's) while the block runs; the previous settings after.

    ``warn_only``: an op without a deterministic kernel warns instead of failing (none of SmallCNN's on the
    CPU). The float sums still depend on the machine and its thread count, not on the run."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[2], old[3]


def train_encoder(volumes_mm2s: np.ndarray, table: Any, mask: np.ndarray | None, out_dir: str | Path, *,
                  seed: int = 0, epochs: int = 30, dim: int = 32, batch_size: int = 16, lr: float = 3e-3,
                  norm: Normalization = Normalization(), overwrite: bool = False) -> Encoder:
    """Train the project's own encoder on the REAL TRAINING volumes (N, D, H, W) in mm²/s; save it to ``out_dir``.

    Multi-task objective on the penultimate features (B, dim): cross-entropy for sex (rows with F/M),
    squared error for standardised age (rows with an age), and squared error for the standardised
    4x4x4 average-pooled input and its pooled gradient magnitude (always; the only terms without
    labels: a self-supervised objective that keeps anatomy and texture in the features). Inputs in model
    range, 0 mm²/s (-1) outside ``mask``; a random shift of up to 2 voxels per batch. AdamW, fixed
    epochs, seeded (:func:`neurodit.models.fit.fit_network`), float32 (no autocast) under
    :func:`deterministic_torch`: the same data and seed give the same weights on one machine. Writes
    ``encoder.safetensors``, ``encoder.json`` and ``run.json`` atomically; returns the loaded
    :class:`Encoder` (kind "own").
    """
    from neurodit.models.small_cnn import MIN_SIDE

    n = len(volumes_mm2s)
    if n < 2 or np.ndim(volumes_mm2s) != 4:
        raise NeuroditError(f"the encoder needs at least 2 training volumes (N, D, H, W), got shape "
                            f"{tuple(np.shape(volumes_mm2s))}")
    if min(np.shape(volumes_mm2s)[1:]) < MIN_SIDE:
        raise NeuroditError(f"volumes of shape {tuple(np.shape(volumes_mm2s)[1:])} are too small for the "
                            f"encoder (every side >= {MIN_SIDE})")
    cfg = EncoderTraining(dim=dim, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    t0 = time.perf_counter()
    data_sha = training_data_hash(volumes_mm2s, table, mask)
    keep = torch.as_tensor(np.asarray(mask, dtype=bool)) if mask is not None else None

    def batch(idx: np.ndarray) -> torch.Tensor:
        # (B, D, H, W) mm²/s -> (B, 1, D, H, W) model range, -1 outside the mask
        x = torch.from_numpy(np.ascontiguousarray(norm.to_model(np.asarray(volumes_mm2s[np.sort(idx)],
                                                                            dtype=np.float32))))
        if keep is not None:
            x = torch.where(keep, x, torch.tensor(-1.0))
        return x[:, None].float()

    with deterministic_torch():
        return _train(volumes_mm2s, table, mask, out_dir, cfg, norm, overwrite, batch, data_sha, t0)


def _train(volumes_mm2s, table, mask, out_dir, cfg: EncoderTraining, norm: Normalization, overwrite: bool,
           batch, data_sha: str, t0: float) -> Encoder:
    """:func:`train_encoder`'s body, under :func:`deterministic_torch`."""
    from neurodit.models.fit import fit_network
    from neurodit.models.small_cnn import input_pool

    n, seed = len(volumes_mm2s), cfg.seed
    targets = _targets(batch, n, table, cfg.recon_side)
    seed_everything(seed)
    arch = {"name": "small", "channels": list(cfg.channels), "dim": cfg.dim, "n_outputs": 3 + 2 * cfg.recon_side ** 3}
    pool = input_pool(np.shape(volumes_mm2s)[1:])
    if pool > 1:  # large grids: the network pools its input first (small_cnn.WORK_SIDE); part of the saved arch
        arch["in_pool"] = pool
    net = EncoderNet(arch)
    body, pool_in = net.net, net.net.pool_in
    pooled = None
    if pool > 1:
        # the network's first op, done once: 30 epochs then read (N, 1, D/p, H/p, W/p) from memory instead of
        # full-resolution volumes from disk (at 2 mm 27x smaller; the random shift moves p-voxel steps)
        pooled = torch.cat([body.pool_in(batch(np.arange(i, min(i + 8, n)))) for i in range(0, n, 8)])
        body.pool_in = nn.Identity()

    def load_batch(idx: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        rows = np.sort(idx.numpy())  # ascending rows: sequential reads of an on-disk set
        return (batch(rows) if pooled is None else pooled[rows]), rows

    # the training forward is the SmallCNN's own: its head on the pooled features
    try:
        # amp=False: float32 training, the same weights whoever has bf16 (fit.bf16_supported)
        fit = fit_network(body, n, load_batch, targets.loss, epochs=cfg.epochs, batch_size=cfg.batch_size,
                          lr=cfg.lr, weight_decay=cfg.weight_decay, seed=seed, augment=random_shift, amp=False,
                          what="encoder")
    finally:
        body.pool_in = pool_in

    sex = targets.sex
    objective = (["pooled input and gradient reconstruction"] + (["sex"] if targets.use_sex else [])
                 + (["age"] if targets.use_age else []))
    trained_on = {"n": int(n), "shape": [int(s) for s in np.shape(volumes_mm2s)[1:]], "sha256": data_sha,
                  "labels": {"sex": int((sex >= 0).sum()), "age": int(targets.has_age.sum())},
                  "objective": objective, "mask_voxels": None if mask is None else int(np.sum(mask))}
    blob = _state_bytes(net, {"format": FORMAT})
    config = {"format": FORMAT, "feature_view": FEATURE_VIEW, "kind": "own", "arch": arch, "input": "model",
              "normalization": norm.to_dict(), "dim": cfg.dim, "weights": WEIGHTS_FILE,
              "weights_sha256": hashlib.sha256(blob).hexdigest(), "trained_on": trained_on,
              "training": {**dataclasses.asdict(cfg), "loss": fit.train_loss, "seconds": time.perf_counter() - t0,
                           "age_mean": targets.age_mu, "age_sd": targets.age_sd},
              "versions": package_versions()}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        atomic_write_bytes(tmp / WEIGHTS_FILE, blob)
        write_json(tmp / CONFIG_FILE, config)
        write_run_info(tmp, dataclasses.asdict(cfg), seed, stage="encoder", trained_on=trained_on)
    return load_encoder(Path(out_dir) / CONFIG_FILE)


# --------------------------------------------------------------------------- loading
def _load_torchscript(path: Path) -> Encoder:
    from neurodit.weights import load_torchscript

    module = load_torchscript(path, what="TorchScript encoder")
    info = {"kind": "torchscript", "source": str(path), "sha256": _sha256_file(path), "dim": None,
            "trained_on": {"note": "external encoder: its training data are not known to neurodit"}}
    return Encoder(module, info, "model")


def _find_config(path: Path) -> tuple[Path, Path]:
    """(config json, weights safetensors) for a folder, a .json or a .safetensors path."""
    if path.is_dir():
        cfg = path / CONFIG_FILE
        if not cfg.exists():
            raise NeuroditError(f"encoder folder has no {CONFIG_FILE}", path)
    elif path.suffix == ".json":
        cfg = path
    else:  # .safetensors: its config is <stem>.json beside it, else encoder.json
        cands = [path.with_suffix(".json"), path.parent / CONFIG_FILE]
        found = [c for c in cands if c.exists()]
        if not found:
            raise NeuroditError(f"safetensors encoder needs a JSON config beside it ({cands[0].name} or "
                                f"{CONFIG_FILE}; see docs/JUDGE.md)", path)
        cfg = found[0]
    from neurodit.io import read_json

    conf = read_json(cfg)
    if not isinstance(conf, dict) or "arch" not in conf:
        raise NeuroditError("encoder config has no 'arch' (see docs/JUDGE.md for the format)", cfg)
    weights = path if path.suffix == ".safetensors" else cfg.parent / str(conf.get("weights", WEIGHTS_FILE))
    if not weights.exists():
        raise NeuroditError(f"encoder weights {weights.name} not found beside the config", weights)
    return cfg, weights


def _load_safetensors(path: Path) -> Encoder:
    from neurodit.io import read_json
    from neurodit.weights import load_safetensors_bytes

    cfg_path, weights = _find_config(path)
    conf = read_json(cfg_path)
    blob = weights.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if conf.get("weights_sha256") and conf["weights_sha256"] != sha:
        raise NeuroditError(f"weights sha256 {sha[:12]}… differs from the config's "
                            f"{str(conf['weights_sha256'])[:12]}… (file changed?)", weights)
    state = load_safetensors_bytes(blob, weights)  # the one safe loader (neurodit.weights)
    arch = conf["arch"]
    if not isinstance(arch, dict):
        raise NeuroditError("'arch' must be an object like {\"name\": \"resnet\", \"depth\": 10}", cfg_path)
    net = EncoderNet(arch)
    # MedicalNet checkpoints were saved from nn.DataParallel: keys start with "module."
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = net.net.state_dict()
    if arch["name"] == "resnet":
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # classifier head unused
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise NeuroditError(f"weights do not fit arch {json.dumps(arch)}: {len(missing)} missing "
                            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})", weights)
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise NeuroditError(f"tensor {k} has shape {tuple(state[k].shape)}, arch expects {tuple(v.shape)}",
                                weights)
    net.net.load_state_dict(state, strict=True)
    own_kind = conf.get("format") == FORMAT and conf.get("kind") == "own"
    dim = conf.get("dim", arch.get("dim"))
    info = {"kind": "own" if own_kind else "safetensors", "source": str(weights), "sha256": sha,
            "dim": None if dim is None else int(dim), "arch": arch,
            "trained_on": conf.get("trained_on") or {"note": "external encoder: its training data are not "
                                                             "known to neurodit"}}
    return Encoder(net, info, str(conf.get("input", "model")))


def load_encoder(path: str | Path) -> Encoder:
    """A user's encoder: a TorchScript file (``torch.jit.load``, CPU), or safetensors weights with a JSON
    config (a folder with ``encoder.json``, the ``.json`` itself, or the ``.safetensors`` with ``<stem>.json``
    or ``encoder.json`` beside it). Anything else, pickled checkpoints included, is a NeuroditError naming
    the file: pickles are never unpickled.
    """
    path = Path(path)
    if not path.exists():
        raise NeuroditError("encoder file not found", path)
    if path.is_dir() or path.suffix in (".json", ".safetensors"):
        return _load_safetensors(path)
    from neurodit.weights import is_torchscript

    if is_torchscript(path):  # checked by its zip entries before torch.jit.load
        return _load_torchscript(path)
    raise NeuroditError("not a TorchScript archive nor safetensors + JSON config (a pickled checkpoint? "
                        "those are never loaded: export with torch.jit.script/trace or save_file + a config, "
                        "see docs/JUDGE.md)", path)


def cache_key(data_sha: str, train_kwargs: dict[str, Any]) -> str:
    """The own encoder's cache key (16 hex digits): sha256 of the training data's hash, every training
    setting resolved against its default (so a changed default is a new key), the normalisation and
    :data:`FEATURE_VIEW`."""
    unknown = sorted(set(train_kwargs) - {f.name for f in dataclasses.fields(EncoderTraining)} - {"norm"})
    if unknown:
        raise NeuroditError(f"unknown encoder training setting(s) {unknown}")
    settings = {**dataclasses.asdict(EncoderTraining()), **{k: v for k, v in train_kwargs.items() if k != "norm"}}
    settings["norm"] = train_kwargs.get("norm", Normalization()).to_dict()
    settings["feature_view"] = FEATURE_VIEW
    return hashlib.sha256((data_sha + json.dumps(settings, sort_keys=True, default=list)).encode()).hexdigest()[:16]


def get_encoder(train_mm2s: np.ndarray | None, table: Any, mask: np.ndarray | None, cache_dir: str | Path,
                encoder_path: str | Path | None = None, **train_kwargs: Any) -> Encoder:
    """The encoder of one evaluation: ``encoder_path`` if given; else the cached own encoder trained on
    exactly these training volumes/labels/mask with these settings (``cache_dir/encoder-<key>/``); else
    train it there (:func:`train_encoder`). ``info["cached"]`` says whether it was reused."""
    if encoder_path is not None:
        enc = load_encoder(encoder_path)
        enc._info["cached"] = False
        return enc
    if train_mm2s is None:
        raise NeuroditError("feature metrics need the real training volumes (--train) to train the "
                            "project's encoder, or an --encoder file")
    data_sha = training_data_hash(train_mm2s, table, mask)
    key = cache_key(data_sha, train_kwargs)
    folder = Path(cache_dir) / f"encoder-{key}"
    if (folder / CONFIG_FILE).exists():
        try:
            enc = load_encoder(folder)
        except NeuroditError:
            enc = None  # a damaged cache entry is retrained below
        if enc is not None and enc.info["trained_on"].get("sha256") == data_sha:
            enc._info["cached"] = True
            return enc
    enc = train_encoder(train_mm2s, table, mask, folder, overwrite=True, **train_kwargs)
    enc._info["cached"] = False
    return enc
