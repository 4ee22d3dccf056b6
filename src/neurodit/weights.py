"""The one way a weights file from a user enters neurodit: safetensors, or ``torch.load(weights_only=True)``.

Every user-supplied weights file goes through here: ``--init`` checkpoints (``neurodit.models.pretrained``),
the judge's encoders (``neurodit.metrics.encoder``: safetensors, or TorchScript checked to be a
TorchScript archive first), and diffusers model folders (run folders' ``model/``, ``--init`` folders).
Pickles are never unpickled as objects: ``torch.load(weights_only=True)`` runs PyTorch's restricted
unpickler, which refuses any global outside tensors, plain containers and the few types passed in
``allow`` (e.g. ``argparse.Namespace``, which facebookresearch/DiT's ``train.py`` stores). An explicit
``weights_only=True`` is not overridden by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (torch.serialization).

Every failure is one :class:`~neurodit.errors.NeuroditError` line naming the file: missing file, a
pickle that would import code (refused before anything runs), a truncated or corrupt file.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from neurodit.errors import NeuroditError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# torch's restricted unpickler names the refused global: "Trying to load unsupported GLOBAL posix.system ..."
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|unsupported global: GLOBAL ([\w.]+)|global ([\w.]+) was not an "
                             r"allowed global", re.IGNORECASE)
_TORCHSCRIPT_ENTRY = re.compile(r"^[^/]+/(code/|constants\.pkl$)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise NeuroditError(f"{what} file not found", path)
    if not path.is_file():
        raise NeuroditError(f"{what} path is not a file", path)


def _refusal(exc: BaseException) -> str | None:
    """The global a refused pickle asked for (``posix.system``), or None if ``exc`` is no refusal."""
    text = str(exc)
    if "Weights only load failed" not in text and "weights_only" not in text:
        return None
    m = _REFUSED_GLOBAL.search(text)
    return next((g for g in m.groups() if g), "an object") if m else "an object"


def load_safetensors_bytes(blob: bytes, path: str | Path) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes (already read, e.g. to hash them) -> state dict on CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        return dict(st_load(blob))
    except (SafetensorError, ValueError, OSError) as exc:
        raise NeuroditError(f"truncated or corrupt safetensors file ({_first_line(exc)})", path) from None


def load_checkpoint(path: str | Path, *, allow: Iterable[type] = (), what: str = "checkpoint") -> Any:
    """Read a ``.safetensors`` (-> dict of tensors) or a torch file (``.pt``/``.pth``/``.bin``/...;
    -> whatever plain object it holds: nested dicts/lists of tensors and numbers) without running code.

    ``allow``: extra classes the restricted unpickler may build (``torch.serialization.safe_globals``).
    """
    path = Path(path)
    _check_file(path, what)
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, ValueError, OSError) as exc:
            raise NeuroditError(f"truncated or corrupt safetensors file ({_first_line(exc)})", path) from None
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...: a bad user file
        refused = _refusal(exc)
        if refused is not None:
            raise NeuroditError(f"refused to load with weights_only=True: the pickle would import {refused} "
                                "(code, not tensors); neurodit never unpickles objects: save plain tensors "
                                "or safetensors",
                                path) from None
        raise NeuroditError(f"truncated or corrupt {what} ({type(exc).__name__}: {_first_line(exc)})",
                            path) from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def load_state_dict(path: str | Path, *, allow: Iterable[type] = (), what: str = "weights"
                    ) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` (CPU), safely.

    A file holding anything else (no tensors, nested training state) is a NeuroditError naming it;
    nested checkpoints (``{"model", "ema", ...}``) are read with :func:`load_checkpoint`.
    """
    obj = load_checkpoint(path, allow=allow, what=what)
    if not _is_state_dict(obj):
        raise NeuroditError(f"{what} file holds no state dict (expected tensors by name)", path)
    return dict(obj)


# --------------------------------------------------------------------------- TorchScript
def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zip files with a ``<name>/code/`` folder; ``torch.save`` zips hold only
    ``data.pkl`` + tensors (a pickle: read with :func:`load_checkpoint`, never with ``torch.jit.load``)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(_TORCHSCRIPT_ENTRY.match(n) for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: str | Path, what: str = "TorchScript module") -> torch.jit.ScriptModule:
    """``torch.jit.load`` on CPU, only after :func:`is_torchscript` says the zip is a TorchScript archive
    (its pickles go through TorchScript's own unpickler, which builds no Python objects)."""
    path = Path(path)
    _check_file(path, what)
    if not is_torchscript(path):
        raise NeuroditError(f"not a TorchScript archive (no <name>/code/ entries) for the {what}", path)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure is a bad user file
        raise NeuroditError(f"cannot load {what} ({type(exc).__name__}: {_first_line(exc)})", path) from None


# --------------------------------------------------------------------------- diffusers folders
def load_model_folder(cls: Any, folder: str | Path, **kwargs: Any):
    """``cls.from_pretrained(folder)`` for a local diffusers folder (``config.json`` + weights), with
    every failure one NeuroditError line naming the folder.

    diffusers reads ``*.safetensors`` with safetensors and ``*.bin`` with ``torch.load(weights_only=True)``
    (diffusers.models.model_loading_utils.load_state_dict); a folder without either is refused here.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NeuroditError(f"{cls.__name__} folder not found", folder)
    if not (folder / "config.json").is_file():
        raise NeuroditError(f"no config.json: not a diffusers {cls.__name__} folder", folder)
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    if not weights:
        raise NeuroditError(f"no weights (*.safetensors or *.bin) beside config.json for {cls.__name__}", folder)
    try:
        return cls.from_pretrained(str(folder), **kwargs)
    except NeuroditError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, RuntimeError, SafetensorError, ...
        refused = _refusal(exc)
        if refused is not None:
            raise NeuroditError(f"refused to load with weights_only=True: a weights pickle would import {refused} "
                                "(code, not tensors)",
                                folder) from None
        raise NeuroditError(f"cannot load {cls.__name__} ({type(exc).__name__}: {_first_line(exc)})",
                            folder) from None


__all__ = ["is_torchscript", "load_checkpoint", "load_model_folder", "load_safetensors_bytes",
           "load_state_dict", "load_torchscript"]
