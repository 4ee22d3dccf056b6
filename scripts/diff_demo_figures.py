"""Diff the figures of two `neurodit demo` output folders, leaving out what differs by nature between
two runs (timings, memory, versions, command lines, cache flags) and reading each folder's own path as
the same root. A refactor that claims "no behaviour change" shows an empty diff here:

    python scripts/diff_demo_figures.py BEFORE AFTER [FILE ...]

FILE defaults to every comparison.json, results.json and metrics.json under BEFORE. Exit 1 when a
figure differs, 0 otherwise. NaN equals NaN; every other number must be equal exactly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

VOLATILE = {"seconds", "time", "timestamp", "versions", "argv", "command", "peak_rss_mb", "peak_gpu_mb",
            "cached", "created", "budget", "cost"}  # budget: its text carries the training minutes


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def diff(a, b, where: str, roots: tuple[str, str], out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        a = {k.replace(roots[0], "ROOT"): v for k, v in a.items()}
        b = {k.replace(roots[1], "ROOT"): v for k, v in b.items()}
        for k in sorted(set(a) | set(b)):
            if k in VOLATILE or k.endswith(("_seconds", "_s", "_mb")):
                continue
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only {'after' if k in b else 'before'}")
            else:
                diff(a[k], b[k], f"{where}.{k}", roots, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff(x, y, f"{where}[{i}]", roots, out)
    elif isinstance(a, str) and isinstance(b, str):
        if a.replace(roots[0], "ROOT") != b.replace(roots[1], "ROOT"):
            out.append(f"{where}: {a[:80]!r} -> {b[:80]!r}")
    elif not _same(a, b):
        out.append(f"{where}: {a!r} -> {b!r}")


def main(argv: list[str]) -> int:
    before, after = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    files = argv[2:] or sorted(str(p.relative_to(before)) for name in ("comparison.json", "results.json",
                                                                      "metrics.json") for p in before.rglob(name))
    n_bad = 0
    for rel in files:
        out: list[str] = []
        diff(json.loads((before / rel).read_text()), json.loads((after / rel).read_text()), rel,
             (str(before), str(after)), out)
        n_bad += len(out)
        print(f"{rel}: {'same figures' if not out else f'{len(out)} differences'}")
        for line in out:
            print("   ", line)
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
