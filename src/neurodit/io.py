"""Atomic writes, run metadata and seeding shared by every stage.

Every output is written to a temporary sibling first and renamed into place, so an interrupted or
failed run never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.errors import NeuroditError

_VERSIONED = (
    "neurodit", "torch", "diffusers", "accelerate", "monai", "nibabel", "nilearn", "numpy",
    "scipy", "scikit-learn", "pandas", "safetensors", "pytorch-msssim", "dipy",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose behaviour decides our numbers."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) in one place."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, sort_keys=False) + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def nifti_bytes(volume: np.ndarray, affine: np.ndarray, gz: bool = True, compresslevel: int = 1,
                xform_code: int = 4, description: str = "MD mm2/s") -> bytes:
    """Serialise a 3D float32 NIfTI-1 image (units mm, q/sform ``xform_code``: 1 scanner, 4 MNI152).

    gzip with mtime 0, so the same volume always gives the same bytes (seeded runs are byte-identical).
    """
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=xform_code)
    img.set_sform(img.affine, code=xform_code)
    img.header["descrip"] = description.encode()[:79]
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=compresslevel, mtime=0) if gz else raw


def write_nifti(volume: np.ndarray, affine: np.ndarray, path: str | Path, description: str = "MD mm2/s") -> Path:
    """Atomically write a 3D volume (D, H, W) with ``affine`` as ``.nii`` or ``.nii.gz`` (deterministic bytes)."""
    path = Path(path)
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise NeuroditError(f"expected a 3D volume to write, got shape {vol.shape}", path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise NeuroditError("output must end in .nii or .nii.gz", path)
    return atomic_write_bytes(path, nifti_bytes(vol, affine, gz=path.name.endswith(".gz"), description=description))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise NeuroditError("file not found", path) from exc
    except json.JSONDecodeError as exc:
        raise NeuroditError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path) from exc


def read_schema_json(path: str | Path, schema: str | tuple[str, ...], writer: str,
                     required: tuple[str, ...] = ()) -> dict:
    """A JSON object whose ``schema`` key is ``schema`` (or one of them: the current one first, then older
    ones a reader still accepts) and that holds every key of ``required``; NeuroditError naming the file
    otherwise (``writer``: the command that writes it, for the message)."""
    path = Path(path)
    data = read_json(path)
    accepted = (schema,) if isinstance(schema, str) else tuple(schema)
    if not isinstance(data, dict) or data.get("schema") not in accepted:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise NeuroditError(f"expected schema {' or '.join(accepted)} (written by {writer}), got {got!r}", path)
    missing = [k for k in required if k not in data]
    if missing:
        raise NeuroditError(f"missing key(s) {', '.join(missing)}", path)
    return data


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """``timings[key]`` = the seconds the ``with`` block took (also when it raises): the one stopwatch of the
    stages' and the bench's per-part timings."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = time.perf_counter() - t0


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder in a temporary sibling and rename it into place on success.

    Yields the temporary folder to write into. On any exception the temporary folder is removed
    and ``out`` is left exactly as it was (absent, or the previous complete result).
    An existing non-empty ``out`` is an error unless ``overwrite`` is set.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NeuroditError("output path exists and is not a folder", out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NeuroditError("output folder exists and is not empty (pass --overwrite to replace it)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); outputs are ordinary folders
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)  # put the previous complete result back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:  # the final rename failed (unwritable folder, ...): no temporary folder left
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_run_info(run_dir: str | Path, config: Any, seed: int | None, **extra: Any) -> Path:
    """Write ``run.json`` (resolved config, seed, versions, command line, time) into a run folder."""
    info = {
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    return write_json(Path(run_dir) / "run.json", info)
