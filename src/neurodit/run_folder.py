"""What makes a folder a run folder (RUN_DIR), readable without torch: the file names every run holds,
:func:`is_run_folder`, and ``generator.json`` (which registered generator wrote the run). The report,
``compare`` and sampling all ask here; :mod:`neurodit.runs` writes the rest of the folder and opens a run
for sampling.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_json, write_json

# what a finished run of any generator holds; a diffusion run also needs its tiling and preset to sample
FINISHED_RUN_FILES = ("model/config.json", "labels.json", "prepare.json", "train_config.yaml")
RUN_FILES = (*FINISHED_RUN_FILES, "tiling.json", "preset.json")
GENERATOR_FILE = "generator.json"


def is_run_folder(path: str | Path, *, finished: bool = True) -> bool:
    """True when ``path`` is a folder ``neurodit train`` wrote, for any generator: with ``finished`` (the
    default) one that holds every file a finished run has (:data:`FINISHED_RUN_FILES`: weights config,
    labels, grid, resolved config); with ``finished=False`` also a run still training or killed before its
    end (``train_config.yaml``, written before anything else)."""
    p = Path(path)
    if not finished and (p / "train_config.yaml").is_file():
        return True
    return all((p / f).is_file() for f in FINISHED_RUN_FILES)


def write_generator(run_dir: Path, name: str) -> None:
    """Record which registered generator wrote ``run_dir`` (``generator.json``)."""
    write_json(Path(run_dir) / GENERATOR_FILE, {"generator": str(name)})


def read_generator(run_dir: Path) -> str:
    """The generator of ``run_dir``: ``generator.json``, else the default generator for a run with a
    ``model/`` folder (runs written before there were other generators)."""
    from neurodit.generators.registry import DEFAULT

    run_dir = Path(run_dir)
    f = run_dir / GENERATOR_FILE
    if f.is_file():
        name = read_json(f).get("generator")
        if not isinstance(name, str) or not name:
            raise NeuroditError("no 'generator' name in generator.json", f)
        return name
    if (run_dir / "model" / "config.json").is_file():
        return DEFAULT
    raise NeuroditError("not a finished neurodit run (no generator.json and no model/)", run_dir)


__all__ = ["FINISHED_RUN_FILES", "GENERATOR_FILE", "RUN_FILES", "is_run_folder", "read_generator",
           "write_generator"]
