"""The calibration panel (``evaluate --calibrate``): the judge's headline numbers for the reference
generators (:mod:`neurodit.generators.reference`: pca, noise, copy, mean) fitted on the training set,
beside the model's own, so a reader sees what good, bad and copying look like on this data.

The panel is handed the judge as a function (``judge(synthetic, train) -> light metrics dict``) rather
than importing the evaluate stage: the stage imports this module, and the generators import only the
data layer (:func:`neurodit.data.mask.support_mask`), so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neurodit.data.mask import support_mask
from neurodit.errors import NeuroditError
from neurodit.metrics.verdicts import headline


def _label_counts(labels: list | None) -> dict:
    if not labels:
        return {}
    keys = [str(x) for x in labels if x is not None]
    return {k: keys.count(k) for k in sorted(set(keys))}


def calibration_panel(judge: Callable[[np.ndarray, np.ndarray], dict], train: np.ndarray | None, n: int,
                      seed: int, model_metrics: dict, syn_labels: list | None = None,
                      train_labels: list | None = None) -> dict:
    """The ``calibration`` section: ``judge`` (the light families of one synthetic set) for each reference
    generator fitted on ``train`` (N, D, H, W) mm²/s, ``n`` samples each with the class balance of the
    synthetic set (its ``syn_labels`` counts when both sets have labels, else balanced), beside the
    model's own headline numbers (``model_metrics``). Generator i is sampled with seed ``seed + 100 i``."""
    from neurodit.generators.reference import KINDS, fit_reference

    if train is None:
        raise NeuroditError("--calibrate needs --train (the reference generators are fitted on it)")
    train = np.asarray(train, dtype=np.float32)
    known = set(str(x) for x in (train_labels or []) if x is not None)
    counts = {k: c for k, c in _label_counts(syn_labels).items() if k in known}
    panel: dict = {"model": headline(model_metrics)}
    labels_used: dict = {}
    gen_mask = support_mask(train, min_fraction=1e-6)  # union of the training brains (see generators.reference)
    for i, kind in enumerate(KINDS):
        model = fit_reference(train, train_labels if known else None, gen_mask, kind)
        if counts and sum(counts.values()) == n:
            parts = [model.sample(c, label=k, seed=seed + 100 * i + j) for j, (k, c) in enumerate(counts.items())]
            vols = np.concatenate([p[0] for p in parts])
            labs = [x for p in parts for x in p[1]]
        else:
            vols, labs = model.sample(n, seed=seed + 100 * i)
        labels_used[kind] = _label_counts(labs)
        panel[kind] = headline(judge(vols, train))
        del vols
    panel["labels"] = labels_used
    return panel


__all__ = ["calibration_panel"]
