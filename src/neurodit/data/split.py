"""Participant-level split of a cohort folder into a training and a held-out cohort (``neurodit split``).

Both outputs are cohort folders in the input format (docs/ARCHITECTURE.md), so every later stage
(prepare, train, evaluate, downstream) takes them like any user folder. They are built side by side
and renamed into place together: a failure leaves neither half-written.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from neurodit.data.cohort import TABLE_NAME, Cohort, read_cohort, write_participants
from neurodit.data.maps import MAP_FILE, write_map
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, write_run_info


def _split_indices(table: pd.DataFrame, heldout_fraction: float, seed: int, stratify: str | None,
                  where: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of ``table``, sorted: ``StratifiedGroupKFold`` with
    k = round(1 / heldout_fraction) grouped by participant, first fold held out."""
    groups = table["participant_id"].astype(str).to_numpy()
    k = max(2, int(round(1.0 / heldout_fraction)))
    if len(np.unique(groups)) < k:
        raise NeuroditError(f"too few participants ({len(np.unique(groups))}) to hold out "
                            f"{heldout_fraction:.0%}", where)
    if stratify and stratify in table and table[stratify].notna().all():
        y = table[stratify].astype(str).to_numpy()
    else:
        y = np.zeros(len(table), dtype=int)
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    train_idx, held_idx = next(iter(folds.split(np.zeros(len(table)), y, groups)))
    assert not set(groups[train_idx]) & set(groups[held_idx])  # split by participant, never by scan
    return np.sort(train_idx), np.sort(held_idx)


def _copy_rows(cohort: Cohort, part: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """Copy the volumes of ``part`` into ``tmp``; returns ``part`` with ``path`` naming the copies."""
    names = []
    root = cohort.data_dir.resolve()
    for src in map(Path, part["path"]):
        # keep the file's place relative to the cohort folder, so equal names in
        # different subfolders cannot overwrite each other
        rel = src.resolve().relative_to(root) if src.resolve().is_relative_to(root) else Path(src.name)
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        if (tmp / rel).exists():
            raise NeuroditError(f"two volumes map to the same file name {rel}", src)
        shutil.copy2(src, tmp / rel)
        names.append(rel.as_posix())
    part = part.copy()
    part["path"] = names
    return part


def split_cohort(data_dir: str | Path, train_out: str | Path, heldout_out: str | Path,
                 heldout_fraction: float = 0.2, seed: int = 0, stratify: str | None = "sex",
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Split a cohort folder by participant into ``train_out`` and ``heldout_out`` (``neurodit split``); a
    multi-map folder (``neurodit.data.maps``) is split map by map with one split of its participants.

    All sessions of one participant land on the same side; classes of ``stratify`` keep their
    proportions (see :func:`_split_indices`). Files are copied, ``path`` columns name the copies, and
    each folder gets a ``run.json`` (settings, seed, its side and size).
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise NeuroditError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    from neurodit.data.maps import map_folders

    folders = map_folders(data_dir)  # {} for a one-map cohort folder
    cohorts = {m: read_cohort(d) for m, d in folders.items()} or {"": read_cohort(data_dir)}
    first = next(iter(cohorts.values()))
    table = first.table.reset_index(drop=True)
    for c in cohorts.values():  # one split for every map: the same participants in the same rows
        if list(c.table["participant_id"]) != list(table["participant_id"]):
            raise NeuroditError(f"the {c.map} folder does not list the participants of the {first.map} folder in "
                                "the same rows", c.data_dir / TABLE_NAME)
    idx = _split_indices(table, heldout_fraction, seed, stratify, data_dir)
    config = {"data_dir": str(data_dir), "train_out": str(train_out), "heldout_out": str(heldout_out),
              "heldout_fraction": heldout_fraction, "stratify": stratify, "overwrite": overwrite,
              "maps": list(folders) or None}
    with contextlib.ExitStack() as stack:  # both folders are renamed into place only if both were written
        for side, rows, out in (("train", idx[0], train_out), ("heldout", idx[1], heldout_out)):
            top = stack.enter_context(atomic_dir(out, overwrite=overwrite))
            for m, cohort in cohorts.items():
                tmp = top / m if m else top
                tmp.mkdir(exist_ok=True)
                write_participants(_copy_rows(cohort, cohort.table.reset_index(drop=True).iloc[rows], tmp),
                                   tmp / TABLE_NAME)
                if (cohort.data_dir / MAP_FILE).is_file():  # an FA / AD / RD folder's halves hold the same map
                    write_map(tmp, cohort.map)
                if m:
                    write_run_info(tmp, config, seed, stage="split", side=side, n=len(rows), map=m)
            write_run_info(top, config, seed, stage="split", side=side, n=len(rows))
    return Path(train_out), Path(heldout_out)
