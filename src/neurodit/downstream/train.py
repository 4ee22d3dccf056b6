"""Train one 3D classifier: AdamW, class-weighted cross-entropy, early stopping, bf16 autocast.

Early stopping watches the validation loss (participant-grouped validation split chosen by the caller);
the weights of the best epoch are restored at the end. Optional intensity augmentation (per volume,
inside the brain only: random gain, offset and Gaussian noise) is applied on the fly to training batches.
The loop itself is the shared small-network routine :func:`neurodit.models.fit.fit_network`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodit.models.fit import FitResult, batched_outputs, bf16_supported, fit_network


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


def predict_proba(model: nn.Module, x: np.ndarray | torch.Tensor, *, batch_size: int = 32,
                  device: torch.device | str = "cpu", amp: bool = False) -> np.ndarray:
    """Class probabilities (N, n_classes) for volumes ``x`` of shape (N, D, H, W) in model range."""
    out = [torch.softmax(logits, dim=1).cpu().numpy()
           for logits in batched_outputs(model, x, batch_size=batch_size, device=device, amp=amp)]
    n_out = out[0].shape[1] if out else 2
    return np.concatenate(out) if out else np.zeros((0, n_out), np.float32)


def _mean_loss(model: nn.Module, x: np.ndarray, y: np.ndarray, weight: torch.Tensor, device: torch.device,
               amp: bool, batch_size: int) -> float:
    """Class-weighted cross-entropy of ``model`` on (N, D, H, W) volumes, averaged over the N volumes."""
    total = 0.0
    for i, logits in enumerate(batched_outputs(model, x, batch_size=batch_size, device=device, amp=amp)):
        yb = torch.as_tensor(y[i * batch_size:(i + 1) * batch_size]).to(device)
        total += F.cross_entropy(logits, yb, weight=weight, reduction="sum").item()
    return total / max(len(x), 1)


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
        amp: bf16 autocast, used only where :func:`~neurodit.models.fit.bf16_supported`.
        frozen_backbone: keep the backbone in eval mode (its BatchNorm statistics frozen too); the
            caller has already set ``requires_grad`` (see ``nets.freeze_backbone``).
    """
    device = torch.device(device)
    amp = amp and bf16_supported(device)
    n_classes = max(int(max(int(np.max(y_train)), int(np.max(y_val))) + 1), 2)
    weight = _class_weights(np.asarray(y_train, dtype=int), n_classes).to(device)
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_val = np.ascontiguousarray(x_val, dtype=np.float32)
    y_train_t = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    y_val = np.asarray(y_val, dtype=np.int64)

    def load_batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, D, H, W) -> (B, 1, D, H, W) inputs, (B,) labels on the device
        return torch.from_numpy(x_train[idx.numpy()]).unsqueeze(1), y_train_t[idx].to(device)

    def loss_of(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), yb, weight=weight)  # logits (B, n_classes), bf16 under amp

    def validate() -> float:
        return _mean_loss(model, x_val, y_val, weight, device, amp, 2 * batch_size)

    # skip_single: a batch of one breaks BatchNorm in DenseNet/ResNet
    return fit_network(model, len(x_train), load_batch, loss_of, epochs=epochs, batch_size=batch_size, lr=lr,
                       weight_decay=weight_decay, seed=seed, augment=intensity_augment if augment else None,
                       amp=amp, device=device, validate=validate, patience=patience, keep_eval=frozen_backbone,
                       skip_single=True, what="classifier")


def sex_age_loss(outputs: torch.Tensor, y: torch.Tensor, age_z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sex cross-entropy on ``outputs[:, :2]`` plus the mean squared error of ``outputs[:, 2]`` against the
    z-scored age, over the volumes whose age is known (a synthetic cohort may carry none).

    outputs (B, 3) (bf16 under amp: cast here), y (B,) int64, age_z (B,) float32 with NaN for unknown.
    """
    out = outputs.float()
    loss = F.cross_entropy(out[:, :2], y, weight=weight)
    known = torch.isfinite(age_z)
    if known.any():
        loss = loss + F.mse_loss(out[known, 2], age_z[known])
    return loss


def fit_sex_age(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, age_train: np.ndarray,
                x_val: np.ndarray, y_val: np.ndarray, age_val: np.ndarray, *, epochs: int = 20,
                batch_size: int = 16, lr: float = 1e-3, weight_decay: float = 1e-2, patience: int = 5,
                augment: bool = False, amp: bool = True, device: str | torch.device = "cpu",
                seed: int = 0) -> FitResult:
    """Pretrain ``model`` (3 outputs: two sex logits, one age) on sex and age together
    (:func:`sex_age_loss`): age tracks atrophy, which AD vs CN needs, so a backbone that learned it may
    transfer better than one that learned sex alone. Ages are z-scored with the training volumes' known
    ages; early stopping on the same combined loss of the validation volumes. Arrays as
    :func:`fit_classifier`; ages (N,) years, NaN where unknown."""
    device = torch.device(device)
    amp = amp and bf16_supported(device)
    weight = _class_weights(np.asarray(y_train, dtype=int), 2).to(device)
    known = np.isfinite(age_train)
    mu, sd = (float(age_train[known].mean()), float(age_train[known].std()) or 1.0) if known.any() else (0.0, 1.0)
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_val = np.ascontiguousarray(x_val, dtype=np.float32)
    y_t = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    a_t = torch.as_tensor(((np.asarray(age_train, dtype=float) - mu) / sd).astype(np.float32))
    y_v = torch.as_tensor(np.asarray(y_val, dtype=np.int64))
    a_v = torch.as_tensor(((np.asarray(age_val, dtype=float) - mu) / sd).astype(np.float32))

    def load_batch(idx: torch.Tensor):
        # (B, D, H, W) -> (B, 1, D, H, W); targets (sex (B,), age z (B,)) on the device
        return torch.from_numpy(x_train[idx.numpy()]).unsqueeze(1), (y_t[idx].to(device), a_t[idx].to(device))

    def loss_of(outputs: torch.Tensor, target) -> torch.Tensor:
        return sex_age_loss(outputs, target[0], target[1], weight)

    def validate() -> float:
        total, bs = 0.0, 2 * batch_size
        for i, out in enumerate(batched_outputs(model, x_val, batch_size=bs, device=device, amp=amp)):
            sl = slice(i * bs, (i + 1) * bs)
            total += sex_age_loss(out, y_v[sl].to(device), a_v[sl].to(device), weight).item() * len(out)
        return total / max(len(x_val), 1)

    return fit_network(model, len(x_train), load_batch, loss_of, epochs=epochs, batch_size=batch_size, lr=lr,
                       weight_decay=weight_decay, seed=seed, augment=intensity_augment if augment else None,
                       amp=amp, device=device, validate=validate, patience=patience, skip_single=True,
                       what="sex + age network")
