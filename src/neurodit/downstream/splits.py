"""Participant-grouped, label-stratified splits (sessions of one person never straddle a split).

Built on scikit-learn's ``StratifiedGroupKFold``: each participant (group) lands in exactly one test
fold, and the class balance of each fold is kept as close to the whole set's as grouping allows.
The same ``(labels, groups, seed)`` always gives the same folds, so every arm of the experiment is
trained and tested on identical participants (paired comparisons).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from neurodit.errors import NeuroditError


def _check(labels: np.ndarray, groups: np.ndarray, n_splits: int, what: str) -> None:
    if len(labels) != len(groups):
        raise NeuroditError(f"{what}: {len(labels)} labels but {len(groups)} participant ids")
    # One label per participant: a person whose sessions disagree cannot be stratified.
    for g in np.unique(groups):
        if len(np.unique(labels[groups == g])) > 1:
            raise NeuroditError(f"{what}: participant {g} has sessions with different labels")
    uniq_groups = {g: labels[groups == g][0] for g in np.unique(groups)}
    per_class = np.bincount(np.asarray(list(uniq_groups.values()), dtype=int), minlength=2)
    if len(per_class) < 2 or per_class.min() < n_splits:
        raise NeuroditError(f"{what}: need at least {n_splits} participants per class for {n_splits} "
                            f"folds, have {per_class.tolist()} per class")


def grouped_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int,
                  what: str = "split") -> list[tuple[np.ndarray, np.ndarray]]:
    """K stratified folds grouped by participant.

    Args:
        labels: (N,) int class per volume.
        groups: (N,) participant id per volume (repeated for repeated sessions).
        n_splits: number of folds (>= 2).
        seed: shuffling seed (different seeds give different fold assignments).
    Returns:
        ``[(train_idx, test_idx), ...]`` of length ``n_splits``; index arrays into the N volumes.
    """
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups).astype(str)
    if n_splits < 2:
        raise NeuroditError(f"{what}: need at least 2 folds, got {n_splits}")
    _check(labels, groups, n_splits, what)
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in sgkf.split(np.zeros(len(labels)), labels, groups)]


def grouped_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int,
                    what: str = "validation split") -> tuple[np.ndarray, np.ndarray]:
    """One stratified, participant-grouped hold-out of about ``fraction`` of the participants.

    Used for the early-stopping validation set inside a training fold. Returns (keep_idx, holdout_idx).
    """
    if not 0.0 < fraction < 0.5:
        raise NeuroditError(f"{what}: validation fraction must be in (0, 0.5), got {fraction}")
    n_splits = max(2, round(1.0 / fraction))
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups).astype(str)
    n_per_class = np.bincount([labels[groups == g][0] for g in np.unique(groups)], minlength=2)
    # With few participants, fall back to fewer splits (a larger hold-out) rather than fail.
    n_splits = int(min(n_splits, n_per_class.min()))
    if n_splits < 2:
        raise NeuroditError(f"{what}: too few participants per class ({n_per_class.tolist()}) to hold out")
    train, hold = grouped_folds(labels, groups, n_splits, seed, what)[0]
    return train, hold
