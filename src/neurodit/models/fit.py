"""The one training routine of the small networks: the downstream classifiers, the C2ST CNN view, the encoder.

:func:`fit_network` is a plain minibatch loop (AdamW, fixed or early-stopped epochs, seeded order and
augmentation, optional bf16 autocast); what differs between its users comes in as callables:
``load_batch`` (which volumes, which targets), ``loss_of`` (class weights, extra heads, masked terms)
and ``augment``. Every random draw comes from ONE generator seeded with ``seed``, in a fixed order:
per epoch one ``randperm`` of the examples, then per batch whatever ``augment`` draws. The network's
initial weights are the caller's (seed the global RNG before building it).

:func:`batched_outputs` is the matching eval-mode forward pass over an array of volumes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from neurodit.errors import NeuroditError

# (B, 1, D, H, W) batch, generator -> (B, 1, D, H, W) augmented batch
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class FitResult:
    """What :func:`fit_network` did: best epoch (1-based), epochs run, losses per epoch, seconds.

    Without validation ``best_epoch`` is the last epoch and ``val_loss`` is empty.
    """

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


def fit_network(model: nn.Module, n: int, load_batch: Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
                loss_of: Callable[[torch.Tensor, Any], torch.Tensor], *, epochs: int, batch_size: int,
                lr: float, weight_decay: float, seed: int, augment: Augment | None = None, amp: bool = False,
                device: str | torch.device = "cpu", validate: Callable[[], float] | None = None,
                patience: int = 0, keep_eval: bool = False, skip_single: bool = False,
                what: str = "network") -> FitResult:
    """Train ``model`` in place on ``n`` examples; it is left in eval mode.

    Args:
        load_batch: example indices (B,) int64 tensor -> (inputs (B, C, D, H, W) float32 on the CPU,
            targets in whatever form ``loss_of`` takes, already on ``device``).
        loss_of: (outputs (B, n_outputs), targets) -> scalar loss; outputs as the network gives them
            (bf16 under autocast: cast inside ``loss_of`` where the loss needs float32).
        augment: applied to the CPU inputs of each training batch with the routine's generator.
        amp: bf16 autocast of the forward pass (the caller checks :func:`bf16_supported`).
        validate: () -> validation loss, called after every epoch; then training stops after
            ``patience`` epochs without a loss lower by 1e-4, and the weights of the best epoch are restored.
        keep_eval: train in eval mode (a frozen backbone keeps its BatchNorm statistics; the caller has
            set ``requires_grad``); only parameters that require gradients are optimized.
        skip_single: skip a last batch of one example (BatchNorm cannot train on it).
        what: the network's name in the divergence error.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    res = FitResult(best_epoch=0, epochs_run=0)
    best, best_state, bad = math.inf, copy.deepcopy(model.state_dict()) if validate else None, 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train(not keep_eval)
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for idx in order.split(batch_size):
            if len(idx) < 2 and skip_single and n > 1:
                continue
            xb, target = load_batch(idx)
            if augment is not None:
                xb = augment(xb, gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb.to(device))  # (B, n_outputs)
            loss = loss_of(out, target)
            if not torch.isfinite(loss):
                raise NeuroditError(f"{what} training diverged (non-finite loss at epoch {epoch}); lower the "
                                    "learning rate" + (" or turn bf16 autocast off" if amp else ""))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        res.train_loss.append(total / n)
        res.epochs_run = epoch
        if validate is None:
            res.best_epoch = epoch
            continue
        res.val_loss.append(validate())
        if res.val_loss[-1] < best - 1e-4:
            best, bad, res.best_epoch = res.val_loss[-1], 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    res.seconds = time.perf_counter() - t0
    return res


@torch.no_grad()
def batched_outputs(model: nn.Module, x: np.ndarray | torch.Tensor, *, batch_size: int,
                    device: str | torch.device = "cpu", amp: bool = False) -> Iterator[torch.Tensor]:
    """Eval-mode outputs of ``model`` for volumes ``x`` (N, D, H, W): one float32 (B, n_outputs) tensor per
    ``batch_size`` volumes, in order (on ``device``)."""
    device = torch.device(device)
    model.eval().to(device)
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.asarray(x[i:i + batch_size]), dtype=torch.float32)
        xb = xb.unsqueeze(1).to(device)  # (B, D, H, W) -> (B, 1, D, H, W)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        yield out.float()
