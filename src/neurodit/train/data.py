"""Training inputs: the mosaic (or VAE-latent) cache (class labels: ``neurodit.runs``).

Mosaics are built once from the prepared volumes (``neurodit.tiling``) and, for latent presets,
encoded once through the VAE (``neurodit.models.LatentCodec``); the result is kept in memory and in
``RUN_DIR/cache/inputs.safetensors`` (keyed by the prepare checksums, preset and tiling), so a resumed
run does not recompute it and no step ever re-tiles or re-encodes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from neurodit.io import atomic_write_bytes


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
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_file, st_save({"inputs": x}, metadata={"key": key}))
    return x
