"""Participant-grouped, stratified splits: no participant on both sides, classes balanced, deterministic."""

import numpy as np
import pytest

from neurodit.downstream.splits import grouped_folds, grouped_holdout
from neurodit.errors import NeuroditError


def _sessions(n_participants=30, seed=0):
    # 1-4 sessions per participant, one label per participant
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for i in range(n_participants):
        for _ in range(rng.integers(1, 5)):
            groups.append(f"sub-{i:03d}")
            labels.append(i % 2)
    return np.array(labels), np.array(groups)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_folds_never_split_a_participant(seed):
    labels, groups = _sessions(seed=seed)
    folds = grouped_folds(labels, groups, 5, seed)
    assert len(folds) == 5
    seen_test = []
    for tr, te in folds:
        assert set(groups[tr]).isdisjoint(groups[te])  # no participant on both sides
        assert len(tr) + len(te) == len(labels)  # every volume (session) placed once per fold
        # stratified (sklearn balances volumes, not participants): each test fold holds 3 +- 1
        # participants of each class (30 = 15 + 15 over 5 folds)
        te_part = {g: labels[groups == g][0] for g in np.unique(groups[te])}
        assert all(2 <= c <= 4 for c in np.bincount(list(te_part.values()), minlength=2))
        seen_test.extend(np.unique(groups[te]))
    assert sorted(seen_test) == sorted(np.unique(groups))  # each participant tested exactly once


def test_holdout_is_grouped_and_deterministic():
    labels, groups = _sessions(n_participants=40)
    keep, hold = grouped_holdout(labels, groups, 0.2, seed=3)
    assert set(groups[keep]).isdisjoint(groups[hold])
    assert len(np.unique(groups[hold])) == 8  # 20% of 40 participants
    keep2, hold2 = grouped_holdout(labels, groups, 0.2, seed=3)
    assert np.array_equal(hold, hold2) and np.array_equal(keep, keep2)  # same splits for every arm
    _, hold3 = grouped_holdout(labels, groups, 0.2, seed=4)
    assert not np.array_equal(hold, hold3)  # another seed, another split


def test_bad_splits_raise():
    labels, groups = _sessions(n_participants=6)
    with pytest.raises(NeuroditError, match="per class"):
        grouped_folds(labels, groups, 5, 0)  # 3 participants per class < 5 folds
    bad = labels.copy()
    first = np.flatnonzero(groups == groups[0])
    if len(first) == 1:
        groups = np.concatenate([groups, groups[:1]])
        bad = np.concatenate([bad, 1 - bad[:1]])
    else:
        bad[first[1]] = 1 - bad[first[0]]
    with pytest.raises(NeuroditError, match="different labels"):
        grouped_folds(bad, groups, 2, 0)
