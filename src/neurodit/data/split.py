"""Participant-level splits of a cohort folder, and export of a prepared cohort as NIfTI.

Both write cohort folders in the input format (docs/ARCHITECTURE.md), atomically, so every later
stage (train, evaluate, downstream) can take them like any user folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from neurodit.data.cohort import read_cohort
from neurodit.data.prepare import load_prepared
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_text

TABLE = "participants.tsv"


def _write_table(folder: Path, table: pd.DataFrame) -> None:
    atomic_write_text(folder / TABLE, table.to_csv(sep="\t", index=False, na_rep="n/a"))


def split_cohort(data_dir: str | Path, train_out: str | Path, heldout_out: str | Path,
                 heldout_fraction: float = 0.2, seed: int = 0, stratify: str | None = "sex",
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Split a cohort folder by participant into ``train_out`` and ``heldout_out``.

    All sessions of one participant land on the same side (``StratifiedGroupKFold`` with
    k = round(1 / heldout_fraction), first fold held out); classes of ``stratify`` keep their
    proportions. Files are copied, and ``path`` columns are rewritten to the copies' names.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise NeuroditError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    cohort = read_cohort(data_dir)
    table = cohort.table.reset_index(drop=True)
    groups = table["participant_id"].astype(str).to_numpy()
    k = max(2, int(round(1.0 / heldout_fraction)))
    if len(np.unique(groups)) < k:
        raise NeuroditError(f"too few participants ({len(np.unique(groups))}) to hold out "
                            f"{heldout_fraction:.0%}", data_dir)
    if stratify and stratify in table and table[stratify].notna().all():
        y = table[stratify].astype(str).to_numpy()
    else:
        y = np.zeros(len(table), dtype=int)
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    train_idx, held_idx = next(iter(folds.split(np.zeros(len(table)), y, groups)))
    assert not set(groups[train_idx]) & set(groups[held_idx])  # split by participant, never by scan
    outs = []
    for idx, out in ((train_idx, train_out), (held_idx, heldout_out)):
        part = table.iloc[np.sort(idx)].copy()
        with atomic_dir(out, overwrite=overwrite) as tmp:
            names = []
            for src in part["path"]:
                # keep the file's place relative to the cohort folder, so equal names in
                # different subfolders cannot overwrite each other
                src = Path(src)
                rel = src.resolve().relative_to(cohort.data_dir.resolve()) \
                    if src.resolve().is_relative_to(cohort.data_dir.resolve()) else Path(src.name)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if (tmp / rel).exists():
                    raise NeuroditError(f"two volumes map to the same file name {rel}", src)
                shutil.copy2(src, tmp / rel)
                names.append(rel.as_posix())
            part["path"] = names
            _write_table(tmp, part)
        outs.append(Path(out))
    return outs[0], outs[1]


def export_prepared(prep_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write a PREP_DIR's volumes back as a cohort folder: NIfTI in mm²/s on the prepared grid.

    This is the real data exactly as the generator sees it (resampled, masked, clipped to the
    normalisation window), so real-vs-synthetic comparisons differ only by the generator.
    """
    prep = load_prepared(prep_dir)
    table = prep.table.copy()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        names = []
        for i, row in table.iterrows():
            ses = row.get("session_id")
            stem = str(row["participant_id"]) + (f"_{ses}" if isinstance(ses, str) and ses else "")
            name = f"{stem}_md.nii.gz"
            prep.to_nifti(prep.volumes[i], tmp / name)
            names.append(name)
        table = table.drop(columns=[c for c in ("source_path",) if c in table])
        table["path"] = names
        _write_table(tmp, table)
    return Path(out)
