"""Train one 3D classifier: AdamW, class-weighted cross-entropy, early stopping, bf16 autocast.

Early stopping watches the validation loss (participant-grouped validation split chosen by the caller);
the weights of the best epoch are restored at the end. Optional intensity augmentation (per volume,
inside the brain only: random gain, offset and Gaussian noise) is applied on the fly to training batches.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodit.errors import NeuroditError


@dataclass
class FitResult:
    """What :func:`fit_classifier` did: best epoch (1-based), epochs run, losses per epoch, seconds."""

    best_epoch: int
    epochs_run: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast only where the hardware does it natively (else it is emulated and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPU: off. With torch 2.13 (CPU wheel, AVX-512-bf16 machine) bf16 autocast gave intermittent
    # non-finite Conv3d weight gradients in SmallCNN (2 of 5 identical runs) and no speed-up for a
    # network this small (0.82 vs 0.88 ms per 32^3 volume, 2 threads).
    return False


def intensity_augment(x: torch.Tensor, generator: torch.Generator, gain: float = 0.1,
                      offset: float = 0.05, noise: float = 0.02) -> torch.Tensor:
    """Random intensity changes inside the brain, in model range.

    ``x`` is (B, 1, D, H, W) in [-1, 1] with background at -1. Each volume gets a gain in
    [1-gain, 1+gain], an offset in [-offset, offset] and Gaussian noise of sd ``noise``; the background
    (x <= -1 + 1e-6) stays at -1 so the brain outline is not altered.
    """
    b = x.shape[0]
    brain = x > -1.0 + 1e-6  # (B, 1, D, H, W) bool
    g = 1.0 + (torch.rand(b, 1, 1, 1, 1, generator=generator) * 2 - 1) * gain
    o = (torch.rand(b, 1, 1, 1, 1, generator=generator) * 2 - 1) * offset
    n = torch.randn(x.shape, generator=generator) * noise
    # gain acts around the brain's 0 of physical intensity (model value -1)
    y = ((x + 1.0) * g.to(x) - 1.0 + o.to(x) + n.to(x)).clamp(-1.0, 1.0)
    return torch.where(brain, y, x)


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    # inverse class frequency, so an imbalanced cohort (e.g. AD vs CN) does not reward a majority guess
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1.0) / n_classes
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray | torch.Tensor, *, batch_size: int = 32,
                  device: torch.device | str = "cpu", amp: bool = False) -> np.ndarray:
    """Class probabilities (N, n_classes) for volumes ``x`` of shape (N, D, H, W) in model range."""
    device = torch.device(device)
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.asarray(x[i:i + batch_size]), dtype=torch.float32)
        xb = xb.unsqueeze(1).to(device)  # (B, D, H, W) -> (B, 1, D, H, W)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(xb)
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    n_out = out[0].shape[1] if out else 2
    return np.concatenate(out) if out else np.zeros((0, n_out), np.float32)


def _loss(model, x, y, weight, device, amp, batch_size) -> float:
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i:i + batch_size]).unsqueeze(1).to(device)
            yb = torch.as_tensor(y[i:i + batch_size]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)
            total += F.cross_entropy(logits.float(), yb, weight=weight, reduction="sum").item()
            n += len(yb)
    return total / max(n, 1)


def fit_classifier(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray,
                   x_val: np.ndarray, y_val: np.ndarray, *, epochs: int = 20, batch_size: int = 16,
                   lr: float = 1e-3, weight_decay: float = 1e-2, patience: int = 5,
                   augment: bool = False, amp: bool = True, device: str | torch.device = "cpu",
                   seed: int = 0, frozen_backbone: bool = False) -> FitResult:
    """Train ``model`` in place; restore the weights of the epoch with the lowest validation loss.

    Args:
        x_train, x_val: (N, D, H, W) float32 volumes in model range [-1, 1].
        y_train, y_val: (N,) int class labels.
        epochs: maximum epochs; training stops after ``patience`` epochs without a lower val loss.
        amp: bf16 autocast, used only where :func:`bf16_supported`.
        frozen_backbone: keep the backbone in eval mode (its BatchNorm statistics frozen too); the
            caller has already set ``requires_grad`` (see ``nets.freeze_backbone``).
    """
    device = torch.device(device)
    amp = amp and bf16_supported(device)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    n_classes = int(max(int(np.max(y_train)), int(np.max(y_val))) + 1)
    n_classes = max(n_classes, 2)
    weight = _class_weights(np.asarray(y_train, dtype=int), n_classes).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_val = np.ascontiguousarray(x_val, dtype=np.float32)
    y_train_t = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    y_val = np.asarray(y_val, dtype=np.int64)

    res = FitResult(best_epoch=0, epochs_run=0)
    best, best_state, bad = math.inf, copy.deepcopy(model.state_dict()), 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        if frozen_backbone:
            model.eval()  # BatchNorm/Dropout of the frozen backbone stay fixed; the head is linear
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # a batch of one breaks BatchNorm in DenseNet/ResNet
            xb = torch.from_numpy(x_train[idx.numpy()]).unsqueeze(1)  # (B, D, H, W) -> (B, 1, D, H, W)
            if augment:
                xb = intensity_augment(xb, gen)
            xb, yb = xb.to(device), y_train_t[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)  # (B, n_classes)
            loss = F.cross_entropy(logits.float(), yb, weight=weight)
            if not torch.isfinite(loss):
                raise NeuroditError(f"classifier training diverged (non-finite loss at epoch {epoch}); "
                                    "lower the learning rate or turn bf16 autocast off")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        res.train_loss.append(total / len(order))
        val = _loss(model, x_val, y_val, weight, device, amp, 2 * batch_size)
        res.val_loss.append(val)
        res.epochs_run = epoch
        if val < best - 1e-4:
            best, bad, res.best_epoch = val, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    res.seconds = time.perf_counter() - t0
    return res
