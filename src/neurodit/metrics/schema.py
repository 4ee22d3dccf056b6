"""Read ``EVAL_DIR/metrics.json`` in the schema that :mod:`neurodit.metrics.evaluate` documents.

One reader for every consumer (the report, comparisons): it checks the file is a JSON object of schema
:data:`SCHEMA` whose metric families are objects and whose ``figures`` map names PNG files inside EVAL_DIR.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_json

METRICS_FILE = "metrics.json"
SCHEMA = "neurodit.metrics/1"
# top-level keys that describe the run rather than hold a metric family (evaluate's docstring)
META_KEYS = ("schema", "protocol", "n_real", "n_synthetic", "n_train", "mask_voxels", "grid", "normalization",
             "figures", "inputs", "timings_s", "notes", "verdicts")


def read_metrics(eval_dir: str | Path) -> dict:
    """``EVAL_DIR/metrics.json`` as a dict; NeuroditError naming the file if it is missing, not JSON,
    not an object, of another schema than :data:`SCHEMA`, or its ``figures`` is not a map of names to
    relative PNG paths.

    A file without a ``schema`` key is read as version 1: evaluate wrote no version before
    ``neurodit.metrics/1`` was introduced, and those files have exactly the version-1 layout (the key was
    added, nothing else changed), so EVAL_DIRs written earlier still render."""
    path = Path(eval_dir) / METRICS_FILE
    data = read_json(path)
    if not isinstance(data, dict):
        raise NeuroditError("must hold a JSON object (the output of neurodit evaluate)", path)
    if data.get("schema", SCHEMA) != SCHEMA:
        raise NeuroditError(f"expected schema {SCHEMA} (written by neurodit evaluate), got {data['schema']!r}", path)
    figures = data.get("figures", {})
    if not isinstance(figures, dict) or not all(isinstance(v, str) for v in figures.values()):
        raise NeuroditError("'figures' must map names to PNG paths relative to the folder", path)
    return data


def families(metrics: dict) -> dict[str, dict]:
    """The metric families of a metrics.json dict: every top-level object that is not run metadata
    (``META_KEYS``), in file order, e.g. ``msssim``, ``mmd``, ``memorization``. A family may carry a
    plain-words ``verdict`` sentence."""
    return {k: v for k, v in metrics.items() if k not in META_KEYS and isinstance(v, dict)}


def metric_figures(eval_dir: str | Path, metrics: dict) -> dict[str, Path]:
    """name -> PNG path of the ``figures`` map, for files that exist inside EVAL_DIR (a path that
    leaves the folder is ignored: a report never reads outside the folders it was given)."""
    root = Path(eval_dir).resolve()
    out = {}
    for name, rel in metrics.get("figures", {}).items():
        p = (root / rel).resolve()
        if p.is_file() and root in p.parents:
            out[str(name)] = p
    return out


__all__ = ["META_KEYS", "METRICS_FILE", "SCHEMA", "families", "metric_figures", "read_metrics"]
