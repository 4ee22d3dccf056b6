"""Volume sets that stay on disk: what lets ``evaluate`` keep its memory flat in the number of volumes.

``evaluate`` loads each cohort folder into a float32 ``.npy`` file in a scratch folder
(``neurodit.data.cohort.load_volumes(..., out=path)``) and hands the metrics a :class:`DiskVolumes`:
an (N, D, H, W) array-like whose ``vols[i]`` / ``vols[a:b]`` / ``vols[idx]`` read only those volumes.
Why not a plain ``np.memmap``: every page a memmap has touched stays in the process's resident set
(it counts in peak RSS) until the mapping is closed, so a pass over all N volumes would still grow
the RSS with N; here each read maps the file, copies the rows out and unmaps it again.

:class:`ModelRange` is the lazy model-range view ([-1, 1], ``Normalization.to_model``) of any such set,
converted volume by volume as they are read, instead of a full converted copy; :func:`model_range_on_disk`
converts an on-disk set once into a second scratch file instead (the metrics read a volume many times: at
2 mm the repeated conversion was a tenth of an `evaluate`).
Metrics consume either through :func:`chunks` (a bounded number of volumes at a time); ``np.asarray``
on them still works (it reads everything) for code that needs the whole set, e.g. the small real side.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.data.normalize import Normalization

# the chunked reads live in the data layer (numpy only); re-exported: the metrics read their sets through them
from neurodit.data.stream import CHUNK_VOXELS, chunk_size, chunks  # noqa: F401

__all__ = ["DiskVolumes", "ModelRange", "chunks", "take", "is_lazy", "model_range_on_disk"]


def md_scale(volumes: np.ndarray, map_name: str) -> np.ndarray:
    """Values of map ``map_name`` (physical units) -> the same positions in MD's window [0, 4e-3] mm²/s
    (``MD.to_physical(map.to_model(x))``: linear, the model range unchanged, clipped to the map's window).
    The judge's families were built and calibrated on MD maps (their thresholds, feature scales and the
    CNN's input range are MD's); judging another map at MD's scale keeps every model-range number exactly
    what it is in the map's own window. Background 0 stays 0 for maps whose window starts at 0."""
    from neurodit.data.maps import get_map

    md, own = get_map("md").normalization(), get_map(map_name).normalization()
    return np.asarray(md.to_physical(own.to_model(np.asarray(volumes, dtype=np.float32))), dtype=np.float32)


class DiskVolumes:
    """(N, D, H, W) float32 volumes in a ``.npy`` file, read on demand (see the module docstring)."""

    def __init__(self, path: str | Path, cleanup: str | Path | None = None):
        self.path = Path(path)
        arr = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = tuple(arr.shape), arr.dtype
        del arr  # unmaps
        if cleanup is not None:  # a scratch folder, removed with this object (or at exit)
            weakref.finalize(self, shutil.rmtree, str(cleanup), ignore_errors=True)

    @classmethod
    def from_cohort(cls, cohort: Any, grid: Any = None, to_md_scale: bool = False) -> tuple[DiskVolumes, Any]:
        """Load a cohort into a scratch ``.npy`` (``load_volumes(..., out=)``) removed with the object.
        ``to_md_scale``: map the cohort's values from its map's window onto MD's (:func:`md_scale`)."""
        from neurodit.data.cohort import load_volumes

        scratch = Path(tempfile.mkdtemp(prefix="neurodit-volumes-"))
        try:
            arr, g = load_volumes(cohort, grid, out=scratch / "volumes.npy")
            if to_md_scale and cohort.map != "md":
                del arr
                vols = np.load(scratch / "volumes.npy", mmap_mode="r+")
                for i in range(len(vols)):  # one volume at a time: memory flat in N
                    vols[i] = md_scale(vols[i], cohort.map)
                vols.flush()
                del vols
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return cls(scratch / "volumes.npy", cleanup=scratch), g

    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        arr = np.load(self.path, mmap_mode="r")
        try:
            return np.array(arr[idx], dtype=self.dtype, copy=True)  # copy out before the unmap
        finally:
            del arr

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class ModelRange:
    """Lazy ``norm.to_model`` of a volume set (array, memmap or :class:`DiskVolumes`), float32."""

    def __init__(self, base: Any, norm: Normalization):
        self.base, self.norm = base, norm
        self.shape, self.dtype = tuple(np.shape(base)), np.dtype(np.float32)

    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.asarray(self.norm.to_model(np.asarray(self.base[idx], dtype=np.float32)), dtype=np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def model_range_on_disk(vols: DiskVolumes, norm: Normalization) -> DiskVolumes:
    """``norm.to_model`` of the on-disk set ``vols`` written once, chunk by chunk, to a scratch ``.npy`` (removed
    with the returned :class:`DiskVolumes`): memory stays bounded by a chunk, each chunk written through its
    own short-lived map."""
    scratch = Path(tempfile.mkdtemp(prefix="neurodit-model-range-"))
    path = scratch / "volumes.npy"
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=tuple(vols.shape))
        del out  # the header and the file's size: the rows go in below
        for a, part in chunks(vols):
            out = np.load(path, mmap_mode="r+")
            out[a:a + len(part)] = norm.to_model(np.asarray(part, dtype=np.float32))
            out.flush()
            del out
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return DiskVolumes(path, cleanup=scratch)


def is_lazy(x: Any) -> bool:
    return isinstance(x, (DiskVolumes, ModelRange, np.memmap))


def take(vols: Any, idx: np.ndarray) -> np.ndarray:
    """``vols[idx]`` for an index array (sorted reads; rows returned in ``idx`` order)."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        return np.asarray(vols[0:0])
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(vols[uniq])[inv]
