"""Read ``DS_DIR/results.json`` in the schema ``neurodit.downstream/2`` that
:mod:`neurodit.downstream.experiment` documents in its module docstring (``/1``, written before several
synthetic cohorts could be named, is the same layout without them and is still read)."""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_schema_json

RESULTS_FILE = "results.json"
SCHEMA = "neurodit.downstream/2"
# older schemas read as they are: /1 is /2 without named synthetic cohorts (no "[name]" arms, no "cohort")
READABLE = (SCHEMA, "neurodit.downstream/1")
REQUIRED = ("data", "arms", "comparisons", "verdict")
# plots beside results.json, in the order a reader wants them
FIGURES = ("arms", "roc")


def read_results(ds_dir: str | Path) -> dict:
    """``DS_DIR/results.json`` as a dict; NeuroditError naming the file if it is missing, not JSON, of
    another schema, or lacks one of ``REQUIRED`` (arms an object, comparisons a list of objects)."""
    path = Path(ds_dir) / RESULTS_FILE
    data = read_schema_json(path, READABLE, "neurodit downstream", REQUIRED)
    if not isinstance(data["arms"], dict) or not isinstance(data["comparisons"], list) \
            or not all(isinstance(c, dict) for c in data["comparisons"]):
        raise NeuroditError("'arms' must be an object and 'comparisons' a list of objects", path)
    return data


def data_sets(results: dict) -> list[tuple[str, dict]]:
    """(label, summary) of every cohort in ``results["data"]``: named synthetic cohorts as
    ``synthetic (name)``, one each (``data.synthetic`` is {name: summary} for them)."""
    out = []
    for key, d in results["data"].items():
        if key == "synthetic" and isinstance(d, dict) and "n_volumes" not in d:
            out += [(f"synthetic ({name})", s) for name, s in d.items()]
        else:
            out.append((key, d))
    return out


def result_figures(ds_dir: str | Path) -> dict[str, Path]:
    """name -> path of the downstream plots (``arms.png``, ``roc.png``) that exist in DS_DIR."""
    return {n: Path(ds_dir) / f"{n}.png" for n in FIGURES if (Path(ds_dir) / f"{n}.png").is_file()}


__all__ = ["FIGURES", "READABLE", "REQUIRED", "RESULTS_FILE", "SCHEMA", "data_sets", "read_results", "result_figures"]
