"""Read ``DS_DIR/results.json`` in the schema ``neurodit.downstream/1`` that
:mod:`neurodit.downstream.experiment` documents in its module docstring."""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_schema_json

RESULTS_FILE = "results.json"
SCHEMA = "neurodit.downstream/1"
REQUIRED = ("data", "arms", "comparisons", "verdict")
# plots beside results.json, in the order a reader wants them
FIGURES = ("arms", "roc")


def read_results(ds_dir: str | Path) -> dict:
    """``DS_DIR/results.json`` as a dict; NeuroditError naming the file if it is missing, not JSON, of
    another schema, or lacks one of ``REQUIRED`` (arms an object, comparisons a list of objects)."""
    path = Path(ds_dir) / RESULTS_FILE
    data = read_schema_json(path, SCHEMA, "neurodit downstream", REQUIRED)
    if not isinstance(data["arms"], dict) or not isinstance(data["comparisons"], list) \
            or not all(isinstance(c, dict) for c in data["comparisons"]):
        raise NeuroditError("'arms' must be an object and 'comparisons' a list of objects", path)
    return data


def result_figures(ds_dir: str | Path) -> dict[str, Path]:
    """name -> path of the downstream plots (``arms.png``, ``roc.png``) that exist in DS_DIR."""
    return {n: Path(ds_dir) / f"{n}.png" for n in FIGURES if (Path(ds_dir) / f"{n}.png").is_file()}


__all__ = ["FIGURES", "REQUIRED", "RESULTS_FILE", "SCHEMA", "read_results", "result_figures"]
