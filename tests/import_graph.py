"""The project's static import graph (every ``import`` / ``from ... import``, also inside functions), for
tests that check which modules may reach which: ``graph()`` maps each ``neurodit`` module to the project
modules it imports; ``reachable(graph, start)`` is everything ``start`` imports, directly or not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph() -> dict[str, set[str]]:
    """{module: project modules it imports}; ``from pkg import name`` counts as importing ``pkg.name`` when
    that is a module, and importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` (except the packages
    the importer itself lives in: they are already running when it runs, so that is no cycle)."""
    files = {_name(p): p for p in sorted((SRC / "neurodit").rglob("*.py"))}
    out: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets |= {base} | {f"{base}.{a.name}" for a in node.names}
        own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)} - own
        out[mod] = {t for t in targets | parents if t in files and t != mod and t not in own}
    return out


def reachable(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for t in g[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return seen
