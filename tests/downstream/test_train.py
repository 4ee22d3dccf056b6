"""The classifier learns a planted effect and stays at chance on shuffled labels; augmentation is sane."""

import numpy as np
import torch

from neurodit.downstream import nets
from neurodit.downstream.stats import classification_metrics
from neurodit.downstream.train import fit_classifier, intensity_augment, predict_proba


def _train_and_test(make_set, shuffle: bool):
    train = make_set(60, side=16, seed=10, effect=0.3)
    val = make_set(20, side=16, seed=11, effect=0.3, prefix="val")
    test = make_set(80, side=16, seed=12, effect=0.3, prefix="test")
    y_train, y_val, y_test = train.labels.copy(), val.labels.copy(), test.labels.copy()
    if shuffle:
        # permutation check: labels shuffled across participants everywhere (train, val and test), so
        # no image-label link is left to learn. (Shuffling only the training labels is not a null:
        # the planted block dominates the image variance, so even an untrained net ranks by it.)
        rng = np.random.default_rng(0)
        y_train, y_val, y_test = rng.permutation(y_train), rng.permutation(y_val), rng.permutation(y_test)
    torch.manual_seed(0)
    model = nets.build_classifier("small")
    fit = fit_classifier(model, train.volumes, y_train, val.volumes, y_val, epochs=12, patience=12,
                         batch_size=8, lr=2e-3, seed=0)
    p = predict_proba(model, test.volumes)
    assert p.shape == (80, 2) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    return classification_metrics(y_test, p[:, 1]), fit


def test_learns_planted_effect(make_set):
    m, fit = _train_and_test(make_set, shuffle=False)
    assert m["roc_auc"] > 0.9, m
    assert m["balanced_accuracy"] > 0.8, m
    # best epoch = lowest val loss (gains under 1e-4 do not count as improvements)
    assert fit.val_loss[fit.best_epoch - 1] <= min(fit.val_loss) + 1e-4
    assert fit.train_loss[-1] < fit.train_loss[0]


def test_chance_on_shuffled_labels(make_set):
    m, _ = _train_and_test(make_set, shuffle=True)
    # 40 vs 40 test participants: AUC under the null has sd ~0.065; 0.2 is three sd
    assert abs(m["roc_auc"] - 0.5) < 0.2, m
    assert abs(m["balanced_accuracy"] - 0.5) < 0.2, m


def test_early_stopping_stops(make_set):
    data = make_set(16, side=16, seed=3)
    model = nets.build_classifier("small")
    # validation labels inverted: val loss rises as the model learns, so training stops early
    fit = fit_classifier(model, data.volumes, data.labels, data.volumes, 1 - data.labels, epochs=30,
                         patience=2, batch_size=8, lr=3e-3)
    assert fit.epochs_run < 30
    assert fit.epochs_run - fit.best_epoch == 2


def test_intensity_augment_keeps_background_and_range(make_set):
    x = torch.from_numpy(make_set(4, side=16).volumes).unsqueeze(1)  # (4, 1, 16, 16, 16)
    y = intensity_augment(x, torch.Generator().manual_seed(0))
    bg = x <= -1 + 1e-6
    assert torch.equal(y[bg], x[bg])  # background untouched
    assert y.min() >= -1 and y.max() <= 1
    diff = (y - x)[~bg]
    assert 0.005 < diff.abs().mean() < 0.2  # changed, but mildly
    y2 = intensity_augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)  # seeded
