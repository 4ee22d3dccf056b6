"""Training inputs: class labels from participants, and the mosaic (or VAE-latent) cache.

Mosaics are built once from the prepared volumes (``neurodit.tiling``) and, for latent presets,
encoded once through the VAE (``neurodit.models.LatentCodec``); the result is kept in memory and in
``RUN_DIR/cache/inputs.safetensors`` (keyed by the prepare checksums, preset and tiling), so a resumed
run does not recompute it and no step ever re-tiles or re-encodes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_bytes

AGE_BIN = "age_bin"


@dataclass(frozen=True)
class LabelSpec:
    """Class labels of a run: ``columns`` combined into ``classes`` (index order); null = len(classes).

    ``label`` is the user's spelling (``"sex"``, ``"diagnosis"``, ``"sex*age_bin"``); ``age_bins`` are
    the age edges in years used for an ``age_bin`` column (bins ``<e0``, ``e0-e1``, ..., ``>=ek``).
    """

    label: str
    columns: tuple[str, ...]
    classes: tuple[str, ...]
    age_bins: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def null_class(self) -> int:
        return len(self.classes)

    def class_values(self, k: int) -> dict[str, str]:
        """Column values of class ``k``, e.g. ``{"sex": "F", "age_bin": "50-70"}``."""
        return dict(zip(self.columns, self.classes[k].split("|"), strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "columns": list(self.columns), "classes": list(self.classes),
                "null_class": self.null_class, "age_bins": list(self.age_bins)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | Path | None = None) -> LabelSpec:
        try:
            return cls(label=str(d["label"]), columns=tuple(d["columns"]), classes=tuple(d["classes"]),
                       age_bins=tuple(float(a) for a in d.get("age_bins", ())))
        except (KeyError, TypeError) as exc:
            raise NeuroditError(f"labels.json: missing or bad key {exc}", where) from exc

    def select(self, wanted: dict[str, str], where: str = "--label") -> list[int]:
        """Class indices whose column values match every ``col=value`` in ``wanted``."""
        for col in wanted:
            if col not in self.columns:
                raise NeuroditError(f"{where}: '{col}' is not a label column of this run "
                                    f"(columns: {', '.join(self.columns)})")
        hits = [k for k in range(self.num_classes)
                if all(self.class_values(k)[c] == str(v) for c, v in wanted.items())]
        if not hits:
            raise NeuroditError(f"{where}: no class matches {wanted} (classes: {', '.join(self.classes)})")
        return hits


def age_bin_names(edges: tuple[float, ...]) -> list[str]:
    def f(x: float) -> str:
        return f"{x:g}"

    names = [f"<{f(edges[0])}"]
    names += [f"{f(a)}-{f(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    names.append(f">={f(edges[-1])}")
    return names


def _column_values(table: pd.DataFrame, col: str, age_bins: tuple[float, ...], where: Path) -> pd.Series:
    if col == AGE_BIN:
        if "age" not in table.columns:
            raise NeuroditError("label age_bin needs an age column in participants.tsv", where)
        age = pd.to_numeric(table["age"], errors="coerce")
        if age.isna().any():
            raise NeuroditError(f"label age_bin: {int(age.isna().sum())} rows without a numeric age", where)
        idx = np.searchsorted(np.asarray(age_bins, dtype=float), age.to_numpy(), side="right")
        names = age_bin_names(age_bins)
        return pd.Series([names[i] for i in idx], index=table.index)
    if col not in table.columns:
        raise NeuroditError(f"label column '{col}' not in participants.tsv "
                            f"(columns: {', '.join(map(str, table.columns))})", where)
    vals = table[col]
    missing = vals.isna() | vals.astype(str).str.strip().str.lower().isin(["", "n/a", "nan", "none"])
    if missing.any():
        raise NeuroditError(f"label column '{col}' is missing on {int(missing.sum())} rows "
                            f"(first: line {int(np.flatnonzero(missing.to_numpy())[0]) + 2})", where)
    return vals.astype(str)


def make_labels(table: pd.DataFrame, label: str, age_bins: list[float] | tuple[float, ...],
                where: Path) -> tuple[LabelSpec, np.ndarray]:
    """Class ids (N,) int64 and the LabelSpec for ``label`` (``"sex"`` or ``"sex*age_bin"``)."""
    columns = tuple(c.strip() for c in label.replace("×", "*").split("*") if c.strip())
    if not columns:
        raise NeuroditError(f"empty label '{label}'")
    edges = tuple(float(a) for a in age_bins)
    if AGE_BIN in columns and (not edges or list(edges) != sorted(set(edges))):
        raise NeuroditError(f"age_bins must be increasing edges in years, got {list(age_bins)}")
    parts = [_column_values(table, c, edges, where) for c in columns]
    combined = parts[0].copy()
    for p in parts[1:]:
        combined = combined + "|" + p
    if AGE_BIN in columns:  # keep bin order (not alphabetical) so class ids read young -> old
        order = {n: i for i, n in enumerate(age_bin_names(edges))}

        def key(name: str) -> tuple:
            return tuple(order.get(v, v) if c == AGE_BIN else v
                         for c, v in zip(columns, name.split("|"), strict=True))

        classes = tuple(sorted(set(combined), key=key))
    else:
        classes = tuple(sorted(set(combined)))
    index = {c: i for i, c in enumerate(classes)}
    ids = np.array([index[v] for v in combined], dtype=np.int64)
    return LabelSpec(label=label, columns=columns, classes=classes,
                     age_bins=edges if AGE_BIN in columns else ()), ids


def cache_key(**parts: Any) -> str:
    """sha256 of the JSON of what the cached tensors depend on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load_or_build_inputs(cache_file: Path, key: str, build) -> torch.Tensor:
    """Return the cached (N, C, S, S) float32 inputs when ``key`` matches, else ``build()`` and save.

    The cache is a safetensors file (no pickle) with the key in its metadata; written atomically.
    """
    if cache_file.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cache_file), framework="pt") as fh:
                meta = fh.metadata() or {}
            if meta.get("key") == key:
                return load_file(str(cache_file))["inputs"]
        except (OSError, RuntimeError, ValueError):
            pass  # unreadable cache: rebuild it
    x = build().contiguous().float()
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({"inputs": x}, str(tmp), metadata={"key": key})
    atomic_write_bytes(cache_file, tmp.read_bytes())
    tmp.unlink()
    return x
