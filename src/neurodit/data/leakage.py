"""No leakage between a generator's training set and the held-out real set it is judged against.

A synthetic cohort folder records where it came from in its ``run.json`` (``neurodit.io.write_run_info``):
``config.run_dir`` (``neurodit sample``: the RUN_DIR of the trained generator) or ``config.train_cohort``
(``neurodit baseline``: the cohort the reference generator was fitted on). Judging synthetic volumes
against real subjects the generator was trained on rewards memorisation, so ``evaluate`` (and
``compare``) call :func:`check_no_leakage` before computing anything.

The training participants of a RUN_DIR are read, first found first:
1. ``RUN_DIR/train_participants.tsv`` (a copy of the prepared table, if the run folder keeps one);
2. the prepared folder named by ``train_config.yaml`` ``prep_dir`` (``neurodit.data.prepare.load_prepared``),
   if its ``prepare.json`` checksums still equal the run's copy (the same prepared data);
3. the cohort named by the run's ``prepare.json`` ``source`` (``neurodit.data.cohort.read_cohort``), keeping
   the rows whose files are listed in its ``checksums`` (the files that were prepared).
A synthetic folder that names a generator whose training set cannot be found is refused (the check would
otherwise pass silently); one without provenance (no run.json, or neither key) is reported as unchecked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from neurodit.errors import NeuroditError

TRAIN_TABLE = "train_participants.tsv"  # optional RUN_DIR copy of the prepared participants table


@dataclass(frozen=True)
class TrainingSet:
    """The participants a generator was trained on and where that list was read."""

    ids: frozenset[str]
    source: str  # file or folder the ids were read from
    generator: str  # RUN_DIR or the baseline's train cohort


def _ids(table) -> frozenset[str]:
    return frozenset(str(x) for x in table["participant_id"])


def _resolve(path: str, base: Path) -> Path:
    """A path from a run's config: absolute, else relative to the current folder or to ``base``."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return base / p


def run_training_set(run_dir: str | Path) -> TrainingSet | None:
    """Training participants of RUN_DIR (see the module docstring for the order), or None if not found."""
    import pandas as pd
    import yaml

    from neurodit.io import read_json

    run_dir = Path(run_dir)
    copy = run_dir / TRAIN_TABLE
    if copy.is_file():
        table = pd.read_csv(copy, sep="\t", dtype=str, keep_default_na=False)
        if "participant_id" not in table.columns:
            raise NeuroditError("missing column participant_id", copy)
        return TrainingSet(_ids(table), str(copy), str(run_dir))
    prep_json = run_dir / "prepare.json"
    run_prep = read_json(prep_json) if prep_json.is_file() else {}
    cfg_file = run_dir / "train_config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {}
    prep_dir = (cfg or {}).get("prep_dir")
    if prep_dir:
        from neurodit.data.prepare import load_prepared

        prep = _resolve(str(prep_dir), run_dir.parent)
        if (prep / "prepare.json").is_file() and \
                read_json(prep / "prepare.json").get("checksums") == run_prep.get("checksums"):
            return TrainingSet(_ids(load_prepared(prep).table), str(prep / "participants.tsv"), str(run_dir))
    source, sums = run_prep.get("source"), run_prep.get("checksums")
    if source and isinstance(sums, dict) and Path(source).is_dir():
        from neurodit.data.cohort import read_cohort

        cohort = read_cohort(source)
        used = {os.path.normpath(cohort.data_dir / rel) for rel in sums}  # keys are relative to the source
        table = cohort.table[[os.path.normpath(p) in used for p in cohort.table["path"]]]
        return TrainingSet(_ids(table), str(cohort.data_dir / "participants.tsv"), str(run_dir))
    return None


def generator_training_set(synthetic_dir: str | Path) -> TrainingSet | None:
    """The training set of the generator that wrote SYN_DIR (from its ``run.json``); None without provenance.

    Raises NeuroditError naming SYN_DIR/run.json when it names a generator whose training set is gone.
    """
    from neurodit.io import read_json

    info_file = Path(synthetic_dir) / "run.json"
    if not info_file.is_file():
        return None
    info = read_json(info_file)
    cfg = info.get("config") if isinstance(info, dict) else None
    if not isinstance(cfg, dict):
        return None
    if cfg.get("run_dir"):
        run_dir = Path(str(cfg["run_dir"]))
        found = run_training_set(run_dir) if run_dir.is_dir() else None
        if found is None:
            raise NeuroditError(f"cannot check for leakage: the generator's run folder {run_dir} "
                                f"{'no longer exists' if not run_dir.is_dir() else 'does not name its training set'}"
                                f" (needs {TRAIN_TABLE}, or its prep_dir / prepare.json source)", info_file)
        return found
    if cfg.get("train_cohort"):
        from neurodit.data.cohort import read_cohort

        train = Path(str(cfg["train_cohort"]))
        if not train.is_dir():
            raise NeuroditError(f"cannot check for leakage: the baseline's train cohort {train} no longer "
                                "exists", info_file)
        cohort = read_cohort(train)
        return TrainingSet(_ids(cohort.table), str(cohort.data_dir / "participants.tsv"), str(train))
    return None


def check_no_leakage(real_ids, real_dir: str | Path, synthetic_dir: str | Path) -> TrainingSet | None:
    """Refuse (NeuroditError naming REAL_DIR and one shared id) when the held-out real participants
    ``real_ids`` overlap the training set of the generator that wrote ``synthetic_dir``.

    Returns the training set that was checked (None: SYN_DIR records no generator, nothing to check).
    """
    train = generator_training_set(synthetic_dir)
    if train is None:
        return None
    shared = sorted(set(map(str, real_ids)) & train.ids)
    if shared:
        raise NeuroditError(f"{len(shared)} held-out participant(s) were in the generator's training set, "
                            f"e.g. {shared[0]} (training set: {train.source}); evaluate against participants "
                            "the generator never saw", real_dir)
    return train


def check_distinct_ids(synthetic_ids, synthetic_dir: str | Path, **real: tuple) -> None:
    """Refuse synthetic participant ids that equal real ones: ``real`` maps a role (``real``, ``train``)
    to ``(ids, folder)``. Per-subject outputs (memorisation pairs, C2ST folds) key on these ids."""
    syn = set(map(str, synthetic_ids))
    for role, (ids, folder) in real.items():
        if ids is None:
            continue
        shared = sorted(syn & set(map(str, ids)))
        if shared:
            raise NeuroditError(f"{len(shared)} synthetic participant_id(s) equal {role} ones in {folder}, "
                                f"e.g. {shared[0]}: synthetic ids must be distinct (neurodit writes syn-*)",
                                Path(synthetic_dir) / "participants.tsv")


__all__ = ["TRAIN_TABLE", "TrainingSet", "check_distinct_ids", "check_no_leakage", "generator_training_set",
           "run_training_set"]
