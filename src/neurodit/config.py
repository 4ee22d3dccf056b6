"""Typed configs: dataclasses loaded from YAML (or dicts) with dotted overrides; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from neurodit.errors import NeuroditError

T = TypeVar("T")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "2e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise NeuroditError(f"config key '{where}': expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; keys that ``cls`` does not declare raise NeuroditError."""
    if not isinstance(data, dict):
        raise NeuroditError(f"config section '{where or cls.__name__}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise NeuroditError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "train.lr", 1e-3)`` sets ``d["train"]["lr"]``."""
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["train.lr=1e-3", "model.layers=4"]`` (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise NeuroditError(f"override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        set_dotted(out, key.strip(), yaml.safe_load(raw))
    return out


def parse_age_bins(items: list[str] | None) -> list[float] | None:
    """``["40,60"]`` or ``["40", "60"]`` (the repeatable ``--age-bins`` flag) -> ``[40.0, 60.0]``; None when
    not given, so the config's own edges stay. Order and spacing are checked where labels are made."""
    if not items:
        return None
    try:
        return [float(x) for item in items for x in str(item).split(",") if x.strip()]
    except ValueError as exc:
        raise NeuroditError(f"--age-bins must be numbers in years, e.g. 40,60; got {items}") from exc


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise NeuroditError("config file not found", path) from exc
    except yaml.YAMLError as exc:
        raise NeuroditError(f"not valid YAML: {exc}", path) from exc
    if not isinstance(data, dict):
        raise NeuroditError("config file must hold a mapping", path)
    return data


def load_config(cls: type[T], source: str | Path | dict[str, Any] | None = None,
                overrides: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML path or dict, merged with ``overrides`` (nested dict)."""
    data = read_yaml(source) if isinstance(source, (str, Path)) else dict(source or {})
    return from_dict(cls, deep_merge(data, overrides or {}))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


CONFIG_DIR = Path(__file__).resolve().parent / "configs"
