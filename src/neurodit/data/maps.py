"""The scalar maps neurodit reads: name, unit, model-range window and the unit checks a file must pass.

A cohort folder holds one map per volume. Which map is in the folder's ``map.json``
(``{"map": "fa"}``, written by ``neurodit dti``, ``neurodit phantom --maps``, ``neurodit export`` and
``neurodit sample``); a folder without one holds MD, the format before issue 22. ``neurodit prepare --map``
names it for a folder that has no ``map.json``.

Diffusivities (MD, AD, RD) are in mm²/s: brain values ~0.3e-3 to 3e-3 (free water at 37 °C ~3.0e-3; AD
of white matter up to ~1.7e-3), window [0, 4e-3]. FA is unitless in [0, 1] (Basser & Pierpaoli 1996).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError

MAP_FILE = "map.json"


@dataclasses.dataclass(frozen=True)
class MapSpec:
    """One scalar map: its ``unit``, model-range window [``vmin``, ``vmax``] and the unit checks of a file
    (over its positive voxels: median at most ``median_max``; maximum at least ``max_min`` and at most
    ``max_max``)."""

    name: str
    what: str
    unit: str
    vmin: float
    vmax: float
    median_max: float
    max_min: float
    max_max: float = float("inf")
    hint: str = ""  # what a file failing the checks probably is
    expected: str = ""  # how the error names what was expected, e.g. "in mm²/s"

    def normalization(self) -> Normalization:
        return Normalization(vmin=self.vmin, vmax=self.vmax, unit=self.unit)

    def check(self, data: np.ndarray, path: str | Path) -> None:
        """NeuroditError naming ``path`` when ``data`` (any shape) is not this map in its unit."""
        sub = data[::3, ::3, ::3] if data.ndim == 3 else data  # 1/27 of the voxels: a robust, cheap median
        pos = sub[sub > 0]
        median = float(np.median(pos)) if pos.size else 0.0
        top = float(np.abs(data).max())
        if median > self.median_max or top > self.max_max or top < self.max_min:
            raise NeuroditError(f"median {self.name.upper()} {median:.3g} (maximum {top:.3g}) is not "
                                f"{self.expected}{self.hint}", path)


# MD of free water at 37 °C is ~3.0e-3 mm²/s: a median (over positive voxels) above 0.05 means other units
# (µm²/ms = 1e-3 mm²/s gives ~0.8), a maximum below 1e-5 means m²/s (~1e-9)
_DIFF_HINT = ("; brain MD is ~1e-3 mm²/s: µm²/ms maps must be multiplied by 1e-3, m²/s maps by 1e6; an FA "
              "map needs map.json {\"map\": \"fa\"} or prepare --map fa")
MAPS = {
    "md": MapSpec("md", "mean diffusivity", "mm2/s", 0.0, 4e-3, 0.05, 1e-5, hint=_DIFF_HINT, expected="in mm²/s"),
    "ad": MapSpec("ad", "axial diffusivity", "mm2/s", 0.0, 4e-3, 0.05, 1e-5, hint=_DIFF_HINT, expected="in mm²/s"),
    "rd": MapSpec("rd", "radial diffusivity", "mm2/s", 0.0, 4e-3, 0.05, 1e-5, hint=_DIFF_HINT, expected="in mm²/s"),
    # FA above 1 (beyond rounding) is not FA; a median under 0.01 is a diffusivity map in mm²/s
    "fa": MapSpec("fa", "fractional anisotropy", "1", 0.0, 1.0, 1.0, 0.01, max_max=1.0 + 1e-3,
                  hint=" (a diffusivity map needs --map md, ad or rd)", expected="FA in [0, 1]"),
}
DEFAULT = "md"


def get_map(name: str) -> MapSpec:
    """The map ``name`` (md, fa, ad, rd); NeuroditError for any other."""
    key = str(name).lower()
    if key not in MAPS:
        raise NeuroditError(f"unknown map '{name}' (known: {', '.join(MAPS)})")
    return MAPS[key]


def read_map(folder: str | Path) -> str:
    """The map a cohort folder holds: ``map.json``'s, else md."""
    from neurodit.io import read_json

    f = Path(folder) / MAP_FILE
    if not f.is_file():
        return DEFAULT
    data = read_json(f)
    if not isinstance(data, dict) or "map" not in data:
        raise NeuroditError('expected {"map": "<name>"}', f)
    try:
        return get_map(data["map"]).name
    except NeuroditError as exc:
        raise NeuroditError(str(exc), f) from None


def require_md(cohort, stage: str) -> None:
    """NeuroditError naming the folder's ``map.json`` when ``cohort`` (a ``neurodit.data.cohort.Cohort``)
    holds another map than MD: ``stage``'s thresholds and windows (the judge's morphometry and tissue
    histograms, its MD windows) are MD's and have no FA / AD / RD counterpart yet."""
    if cohort.map != DEFAULT:
        raise NeuroditError(f"{stage} judges MD maps only so far; this folder holds {cohort.map.upper()}",
                            Path(cohort.data_dir) / MAP_FILE)


def write_map(folder: str | Path, name: str) -> None:
    """Record in a cohort folder which map it holds (md folders get one too: explicit beats implied)."""
    from neurodit.io import write_json

    write_json(Path(folder) / MAP_FILE, {"map": get_map(name).name})


__all__ = ["DEFAULT", "MAPS", "MAP_FILE", "MapSpec", "get_map", "read_map", "require_md", "write_map"]
