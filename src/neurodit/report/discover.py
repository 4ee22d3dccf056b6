"""Find out what each folder handed to ``neurodit report`` is, from the files the stages write.

Kinds (see docs/ARCHITECTURE.md for each stage's folder layout):

- ``train``: a training RUN_DIR (``train_config.yaml``, ``loss.csv``, ``labels.json``, ``model/``, ...).
- ``compare``: a CMP_DIR (``comparison.json``; its ``eval-*`` subfolders are its own, not searched).
- ``eval``: an EVAL_DIR (``metrics.json`` + PNG figures).
- ``maps``: the EVAL_DIR of multi-map folders (``joint.json``; its per-map EVAL_DIRs are its own, not searched).
- ``downstream``: a DS_DIR (``results.json``, ``runs.csv``, PNG plots).
- ``sweep``: a SWEEP_DIR (``results.json`` of schema ``neurodit.sweep/1``, learning-curve PNGs).
- ``effect``: an effect folder of ``neurodit effect`` (``effect.json``, ``effect.png``; its ``samples/`` are
  its own, not searched).
- ``ablation``: an ABL_DIR of ``neurodit demo --ablation`` (``ablation.json``, ``ablation.png``; its run and
  compare subfolders are its own, not searched).
- ``prepared``: a PREP_DIR (``prepare.json`` + ``volumes.npy``).
- ``synthetic`` / ``real``: a cohort folder (``participants.tsv`` + NIfTI, read by
  :func:`neurodit.data.cohort.read_cohort`); synthetic when its ``synthetic`` column is 1 everywhere.
- a demo root holds several of these as direct subfolders: we recurse exactly one level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neurodit.data.cohort import read_cohort
from neurodit.errors import NeuroditError
from neurodit.run_folder import is_run_folder

KINDS = ("train", "compare", "eval", "maps", "sweep", "downstream", "effect", "ablation", "prepared", "synthetic",
         "real")


@dataclass(frozen=True)
class Found:
    """One stage output folder: its kind (one of ``KINDS``) and where it is."""

    kind: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)


def detect_kind(path: str | Path) -> str | None:
    """The kind of one folder (see module docstring), or None when it holds no stage output.

    The order matters: a training run also carries a copy of ``prepare.json``, and a prepared
    folder also carries ``participants.tsv``.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    if is_run_folder(p, finished=False):
        return "train"
    if (p / "comparison.json").is_file():
        return "compare"
    if (p / "metrics.json").is_file():
        return "eval"
    if (p / "joint.json").is_file():
        return "maps"
    if (p / "results.json").is_file():
        from neurodit.downstream.sweep import is_sweep_folder

        return "sweep" if is_sweep_folder(p) else "downstream"
    if (p / "effect.json").is_file():
        return "effect"
    if (p / "ablation.json").is_file():
        return "ablation"
    if (p / "prepare.json").is_file():
        return "prepared"
    if (p / "participants.tsv").is_file():
        return "synthetic" if bool((read_cohort(p).table["synthetic"] == 1).all()) else "real"
    return None


def discover(dirs: list[str | Path]) -> list[Found]:
    """Classify every folder; a folder of no known kind is searched one level down (a demo root).

    Raises NeuroditError for a path that does not exist, is not a folder, or holds nothing we know.
    """
    found: list[Found] = []
    seen: set[Path] = set()
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise NeuroditError("folder not found", p)
        if not p.is_dir():
            raise NeuroditError("not a folder (give run, cohort, eval or downstream folders)", p)
        kind = detect_kind(p)
        if kind is not None:
            items = [Found(kind, p)]
        else:
            items = [Found(k, sub) for sub in sorted(p.iterdir()) if (k := detect_kind(sub)) is not None]
            if not items:
                raise NeuroditError(
                    "no neurodit output found here or in its subfolders (expected one of loss.csv, "
                    "comparison.json, metrics.json, results.json, effect.json, ablation.json, prepare.json, participants.tsv)", p)
        for item in items:
            key = item.path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found
