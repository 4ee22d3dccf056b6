"""The scalar maps neurodit reads: name, unit, model-range window and the unit checks a file must pass.

A cohort folder holds one map per volume. Which map is in the folder's ``map.json``
(``{"map": "fa"}``, written by ``neurodit dti``, ``neurodit phantom --maps``, ``neurodit export`` and
``neurodit sample``); a folder without one holds MD, the format before issue 22. ``neurodit prepare --map``
names it for a folder that has no ``map.json``. A map beyond the four below (kurtosis, ODI, ...) is named in
its folder's ``map.json`` with its unit and window: ``{"map": "mk", "unit": "1", "window": [0, 3]}``.

A **multi-map folder** holds one cohort folder per map, named by the map (``DIR/md/``, ``DIR/fa/``, each with
its ``map.json``): what ``neurodit dti`` and ``neurodit phantom --maps md,fa`` write, what
``neurodit prepare --maps md,fa`` reads and what sampling a several-map run writes. :func:`map_folders`
finds them; the participants of the per-map folders must be the same rows.

Diffusivities (MD, AD, RD) are in mm²/s: brain values ~0.3e-3 to 3e-3 (free water at 37 °C ~3.0e-3; AD
of white matter up to ~1.7e-3), window [0, 4e-3]. FA is unitless in [0, 1] (Basser & Pierpaoli 1996).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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


BUILTIN = tuple(MAPS)  # the maps neurodit knows without a map.json window


def get_map(name: str) -> MapSpec:
    """The map ``name`` (md, fa, ad, rd, or a custom map a ``map.json`` declared in this process);
    NeuroditError for any other."""
    key = str(name).lower()
    if key not in MAPS:
        raise NeuroditError(f"unknown map '{name}' (known: {', '.join(MAPS)}; another map needs its unit and "
                            f'window in its folder\'s map.json: {{"map": "{key}", "unit": "1", "window": [lo, hi]}})')
    return MAPS[key]


def custom_map(name: str, unit: str, window, where: str | Path) -> MapSpec:
    """Declare a map beyond the four (``map.json`` with ``unit`` and ``window``) and register it for this
    process; a built-in name cannot be redefined. Its file check: finite, not all zero, within the window
    (1 % above the top tolerated: rounding of the writer)."""
    key = str(name).strip().lower()
    if not key.isidentifier() or key in BUILTIN:
        raise NeuroditError(f"custom map name '{name}' must be a new identifier (not {', '.join(BUILTIN)})", where)
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise NeuroditError(f"map '{key}': window must be [lo, hi], got {window!r}", where) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise NeuroditError(f"map '{key}': window needs finite lo < hi, got [{lo}, {hi}]", where)
    spec = MapSpec(key, key, str(unit), lo, hi, median_max=float("inf"), max_min=1e-12,
                   max_max=hi + 0.01 * (hi - lo), expected=f"{key.upper()} in [{lo:g}, {hi:g}] {unit}")
    known = MAPS.get(key)
    if known is not None and known != spec:
        raise NeuroditError(f"map '{key}' is declared twice with different units or windows", where)
    MAPS[key] = spec
    return spec


def read_map(folder: str | Path) -> str:
    """The map a cohort folder holds: ``map.json``'s, else md (a custom map is registered on the way)."""
    from neurodit.io import read_json

    f = Path(folder) / MAP_FILE
    if not f.is_file():
        return DEFAULT
    data = read_json(f)
    if not isinstance(data, dict) or "map" not in data:
        raise NeuroditError('expected {"map": "<name>"}', f)
    if "window" in data:
        return custom_map(data["map"], data.get("unit", "1"), data["window"], f).name
    try:
        return get_map(data["map"]).name
    except NeuroditError as exc:
        raise NeuroditError(str(exc), f) from None


def parse_maps(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"md,fa"`` (or a list) -> ``("md", "fa")``: distinct, lower case, at least one."""
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if str(t).strip()]
    if not names or len(set(names)) != len(names):
        raise NeuroditError(f"--maps must name distinct maps, e.g. md,fa; got {text!r}")
    return tuple(names)


def map_folders(folder: str | Path, maps: Sequence[str] | None = None) -> dict[str, Path]:
    """The per-map cohort folders of a multi-map folder (module docstring): ``{map: DIR/map}`` for ``maps``
    (each must exist, NeuroditError naming the missing one), or every subfolder whose ``map.json`` names
    its own folder's name (``maps`` None; {} when there is none: a one-map cohort folder)."""
    folder = Path(folder)
    if maps is None:
        found = {}
        for d in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
            if (d / MAP_FILE).is_file() and read_map(d) == d.name.lower():
                found[d.name.lower()] = d
        return {m: found[m] for m in sorted(found, key=_map_order)}
    out = {}
    for m in maps:
        d = folder / m
        if not (d / "participants.tsv").is_file():
            raise NeuroditError(f"no {m}/ cohort folder (with participants.tsv) for map '{m}' (a multi-map folder "
                                f"holds one cohort folder per map: {'/, '.join(maps)}/)", folder)
        out[m] = d
    return out


def _map_order(name: str) -> tuple[int, str]:
    # md first (the map the judge knows best), then the other built-ins, then custom maps by name
    return (BUILTIN.index(name) if name in BUILTIN else len(BUILTIN), name)


def make_consistent(volumes: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Several maps of one subject (or a batch: any equal shapes), in physical units -> the same maps made
    consistent as a diffusion tensor's maps are: every map clipped to its window (MD, AD, RD >= 0; FA in
    [0, 1]); FA 0 where MD is 0 (no diffusion, no anisotropy); where AD < RD (impossible: AD is the largest eigenvalue, RD the mean of the two others) both
    become their tensor's MD, (AD + 2 RD) / 3, an isotropic tensor of the same trace, and FA there (when
    given) becomes 0, as an isotropic tensor's is; 0 outside ``mask``. Pure: returns new arrays."""
    out = {}
    for name, v in volumes.items():
        spec = get_map(name)
        out[name] = np.clip(np.asarray(v, dtype=np.float32), spec.vmin, spec.vmax)
    if "fa" in out and "md" in out:  # no diffusion, no anisotropy: FA is 0 where MD is
        out["fa"] = np.where(out["md"] > 0, out["fa"], 0.0).astype(np.float32)
    if "ad" in out and "rd" in out:
        bad = out["ad"] < out["rd"]
        iso = (out["ad"] + 2.0 * out["rd"]) / 3.0
        out["ad"] = np.where(bad, iso, out["ad"]).astype(np.float32)
        out["rd"] = np.where(bad, iso, out["rd"]).astype(np.float32)
        if "fa" in out:
            out["fa"] = np.where(bad, 0.0, out["fa"]).astype(np.float32)
    if mask is not None:
        for v in out.values():
            v[..., ~np.asarray(mask, dtype=bool)] = 0.0
    return out


def check_consistent(volumes: dict[str, np.ndarray], atol: float = 1e-7) -> list[str]:
    """What breaks the constraints of :func:`make_consistent` in ``volumes`` (physical units): one line per
    broken rule, [] when they hold."""
    bad = []
    for name, v in volumes.items():
        spec = get_map(name)
        lo, hi = float(np.min(v)), float(np.max(v))
        if lo < spec.vmin - atol or hi > spec.vmax + atol:
            bad.append(f"{name} outside [{spec.vmin:g}, {spec.vmax:g}]: [{lo:.3g}, {hi:.3g}]")
    if "fa" in volumes and "md" in volumes and np.any((volumes["md"] <= 0) & (volumes["fa"] > atol)):
        bad.append(f"fa > 0 where md is 0 in {int(np.sum((volumes['md'] <= 0) & (volumes['fa'] > atol)))} voxels")
    if "ad" in volumes and "rd" in volumes and np.any(volumes["ad"] < volumes["rd"] - atol):
        bad.append(f"ad < rd in {int(np.sum(volumes['ad'] < volumes['rd'] - atol))} voxels")
    return bad


def require_md(cohort, stage: str) -> None:
    """NeuroditError naming the folder's ``map.json`` when ``cohort`` (a ``neurodit.data.cohort.Cohort``)
    holds another map than MD: ``stage`` (compare: its rows share one MD reference and normalisation) takes MD
    only so far; ``neurodit evaluate`` judges any map (``neurodit.metrics.volumes.md_scale``)."""
    if cohort.map != DEFAULT:
        raise NeuroditError(f"{stage} judges MD maps only so far; this folder holds {cohort.map.upper()} "
                            "(neurodit evaluate judges any map)",
                            Path(cohort.data_dir) / MAP_FILE)


def write_map(folder: str | Path, name: str) -> None:
    """Record in a cohort folder which map it holds (md folders get one too: explicit beats implied); a
    custom map keeps its unit and window, so the folder stays readable in another process."""
    from neurodit.io import write_json

    spec = get_map(name)
    extra = {} if spec.name in BUILTIN else {"unit": spec.unit, "window": [spec.vmin, spec.vmax]}
    write_json(Path(folder) / MAP_FILE, {"map": spec.name, **extra})


__all__ = ["BUILTIN", "DEFAULT", "MAPS", "MAP_FILE", "MapSpec", "check_consistent", "custom_map", "get_map",
           "make_consistent", "map_folders", "parse_maps", "read_map", "require_md", "write_map"]
