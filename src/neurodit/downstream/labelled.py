"""Labelled volumes of the downstream experiment: one binary label per volume, grouped by participant."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurodit.errors import NeuroditError

TASK_LABELS = {"sex": ("F", "M"), "diagnosis": ("CN", "AD")}


@dataclass
class LabelledSet:
    """Volumes with one binary label per volume, grouped by participant.

    ``volumes``: (N, D, H, W) float32 in model range [-1, 1]; ``labels``: (N,) int in {0, 1};
    ``groups``: (N,) participant ids (repeated for repeated sessions); ``classes``: names of 0 and 1;
    ``ages``: (N,) float years, NaN where unknown (None: no age column), for the sex + age pretraining.
    """

    volumes: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    classes: tuple[str, str]
    name: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    ages: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=int)
        self.groups = np.asarray(self.groups).astype(str)
        if self.volumes.ndim != 4:
            raise NeuroditError(f"{self.name}: volumes must be (N, D, H, W), got shape {self.volumes.shape}")
        if not len(self.volumes) == len(self.labels) == len(self.groups):
            raise NeuroditError(f"{self.name}: {len(self.volumes)} volumes, {len(self.labels)} labels, "
                                f"{len(self.groups)} participant ids")
        if len(self.labels) and not set(np.unique(self.labels)) <= {0, 1}:
            raise NeuroditError(f"{self.name}: labels must be 0/1")

    def subset(self, idx: np.ndarray) -> LabelledSet:
        return LabelledSet(self.volumes[idx], self.labels[idx], self.groups[idx], self.classes, self.name,
                           ages=None if self.ages is None else self.ages[idx])

    def scoped(self, scope: str) -> LabelledSet:
        """The same set with participant ids ``scope:id``: every generator numbers its volumes syn-000001 ...,
        so cohorts of several generators side by side (never pooled with each other) keep distinct ids."""
        import dataclasses

        return dataclasses.replace(self, groups=np.char.add(f"{scope}:", self.groups.astype(str)))

    def age_or_nan(self) -> np.ndarray:
        """(N,) ages, NaN where unknown (all NaN without an age column)."""
        return np.full(len(self.labels), np.nan) if self.ages is None else np.asarray(self.ages, dtype=float)

    def plus(self, other: LabelledSet) -> LabelledSet:
        """This set followed by ``other`` (this set's classes and name)."""
        ages = None if self.ages is None and other.ages is None else \
            np.concatenate([self.age_or_nan(), other.age_or_nan()])
        return LabelledSet(np.concatenate([self.volumes, other.volumes]), np.concatenate([self.labels, other.labels]),
                           np.concatenate([self.groups, other.groups]), self.classes, self.name, ages=ages)

    def summary(self) -> dict[str, object]:
        per_part = pd.Series(self.labels).groupby(self.groups).first()
        return {"n_volumes": int(len(self.labels)), "n_participants": int(per_part.size),
                "classes": list(self.classes),
                "n_per_class": np.bincount(per_part.to_numpy(int), minlength=2).tolist(),
                "dropped": dict(self.dropped)}


def labelled_from_table(table: pd.DataFrame, volumes: np.ndarray, task: str, *, name: str,
                        include_mci: bool = False, synthetic: bool | None = False) -> LabelledSet:
    """Select the rows usable for ``task`` ("sex" or "diagnosis") from a cohort table.

    ``table`` is ``Cohort.table`` (one row per volume, same order as ``volumes``). Rows without the
    label are dropped (counted in ``dropped``); for "diagnosis", MCI is dropped unless ``include_mci``
    (then MCI is positive, with AD). ``synthetic``: False keeps only real rows (synthetic == 0),
    True only synthetic rows, None all rows.
    """
    if task not in TASK_LABELS:
        raise NeuroditError(f"unknown task '{task}' (known: {', '.join(TASK_LABELS)})")
    if len(table) != len(volumes):
        raise NeuroditError(f"{name}: table has {len(table)} rows but {len(volumes)} volumes")
    if task not in table.columns or table[task].isna().all():
        raise NeuroditError(f"{name}: participants.tsv has no '{task}' labels (needed for the {task} task)")
    keep = np.ones(len(table), dtype=bool)
    dropped: dict[str, int] = {}
    if synthetic is not None and "synthetic" in table.columns:
        is_syn = table["synthetic"].fillna(0).astype(int).to_numpy() == 1
        other = is_syn if not synthetic else ~is_syn
        if other.any():
            dropped["synthetic" if not synthetic else "real"] = int(other.sum())
        keep &= ~other
    values = table[task].to_numpy(dtype=object)
    missing = pd.isna(table[task]).to_numpy() & keep
    if missing.any():
        dropped[f"no {task}"] = int(missing.sum())
    keep &= ~missing
    neg, pos = TASK_LABELS[task]
    labels = np.zeros(len(table), dtype=int)
    if task == "diagnosis":
        mci = (values == "MCI") & keep
        if mci.any() and not include_mci:
            dropped["MCI"] = int(mci.sum())
            keep &= ~mci
        positive = (values == pos) | ((values == "MCI") & include_mci)
    else:
        positive = values == pos
    labels[positive] = 1
    known = (values == neg) | positive
    if (keep & ~known).any():
        bad = sorted({str(v) for v in values[keep & ~known]})
        raise NeuroditError(f"{name}: unexpected {task} label(s) {', '.join(bad)} (expected {neg}/{pos})")
    classes = (neg, "MCI+AD") if task == "diagnosis" and include_mci else (neg, pos)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        raise NeuroditError(f"{name}: no volumes left for the {task} task (dropped: {dropped})")
    ages = pd.to_numeric(table["age"], errors="coerce").to_numpy(float)[idx] if "age" in table.columns else None
    return LabelledSet(np.ascontiguousarray(volumes[idx], dtype=np.float32), labels[idx],
                       table["participant_id"].to_numpy()[idx], classes, name, dropped, ages=ages)
