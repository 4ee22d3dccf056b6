"""Numbers as text, one way everywhere: the report's tables and sentences and the Markdown tables that
stages write next to their JSON (``neurodit compare``'s ``comparison.md``). Standard library only, so any
stage may use it without importing the report.
"""

from __future__ import annotations

import math
from typing import Any

MINUS = "\u2212"  # a true minus sign: "−0.03", not a hyphen


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: ``digits`` significant figures, true minus sign, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    if isinstance(value, int):
        return str(value).replace("-", MINUS)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            text = f"{value:.{max(digits - 1, 1)}e}"
        else:
            text = f"{value:.{digits}g}"
        return text.replace("-", MINUS)
    return str(value)


def signed(value: float, digits: int = 2) -> str:
    """+0.01 / −0.03 (true minus) for differences in plain-words verdicts."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", MINUS)


__all__ = ["MINUS", "fmt", "signed"]
