"""The shared small-network training routine: it learns a separable toy set, is seeded, stops early."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurodit.errors import NeuroditError
from neurodit.models.fit import batched_outputs, fit_network
from neurodit.models.small_cnn import SmallCNN


def _toy(n: int = 16, side: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, side^3) noise volumes; class 1 has one bright 4^3 block: separable by a small CNN."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, side, side, side, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, 4:8, 4:8, 4:8] += 1.0
    return x, y


def _fit(x, y, *, seed=0, epochs=6, **kw):
    torch.manual_seed(seed)
    net = SmallCNN(n_outputs=2)
    res = fit_network(net, len(x), lambda idx: (x[idx], y[idx]), F.cross_entropy, epochs=epochs, batch_size=4,
                      lr=3e-3, weight_decay=1e-2, seed=seed, **kw)
    return net, res


def test_training_loss_falls_on_a_separable_set():
    x, y = _toy()
    net, res = _fit(x, y)
    assert res.epochs_run == res.best_epoch == 6 and res.val_loss == []
    assert res.train_loss[0] > 0.6  # about log 2 at the start
    assert res.train_loss[-1] < 0.5 * res.train_loss[0]
    assert not net.training  # left in eval mode
    logits = torch.cat(list(batched_outputs(net, x[:, 0].numpy(), batch_size=5)))  # (16, 2), 4 batches
    assert logits.shape == (16, 2)
    assert (logits.argmax(1) == y).float().mean() >= 0.9


def test_seeded_and_augment_draws_from_the_routine_generator():
    x, y = _toy(8)
    seen = []

    def augment(xb, gen):  # records the draws: same seed, same draws
        seen.append(float(torch.rand(1, generator=gen)))
        return xb

    a, ra = _fit(x, y, epochs=2, augment=augment)
    b, rb = _fit(x, y, epochs=2, augment=augment)
    assert ra.train_loss == rb.train_loss
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert len(seen) == 2 * 2 * 2 and seen[:4] == seen[4:]  # 2 runs x 2 epochs x 2 batches of 4


def test_early_stopping_restores_the_best_epoch():
    x, y = _toy(8)
    vals = iter([1.0, 0.5, 0.5 - 5e-5, 0.7, 0.9, 0.1])  # best at epoch 2 (epoch 3 gains < 1e-4)
    states = []

    def validate():
        states.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(vals)

    torch.manual_seed(0)
    net = SmallCNN(n_outputs=2)
    res = fit_network(net, 8, lambda idx: (x[idx], y[idx]), F.cross_entropy, epochs=6, batch_size=4, lr=3e-3,
                      weight_decay=0.0, seed=0, validate=validate, patience=2)
    assert (res.best_epoch, res.epochs_run) == (2, 4)
    assert res.val_loss == pytest.approx([1.0, 0.5, 0.49995, 0.7])
    assert all(torch.equal(net.state_dict()[k], v) for k, v in states[1].items())


def test_divergence_is_a_neurodit_error():
    x, y = _toy(4)
    with pytest.raises(NeuroditError, match="toy training diverged .*epoch 1"):
        fit_network(SmallCNN(), 4, lambda idx: (x[idx], y[idx]), lambda out, t: out.sum() * math.nan,
                    epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, seed=0, what="toy")


def test_batched_outputs_match_one_batch():
    x, _ = _toy(5)
    net = SmallCNN(n_outputs=1)
    whole = torch.cat(list(batched_outputs(net, x[:, 0], batch_size=5)))
    parts = torch.cat(list(batched_outputs(net, np.asarray(x[:, 0]), batch_size=2)))
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
