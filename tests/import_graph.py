"""The project's static import graph, read with ``ast`` (every ``import`` / ``from ... import``, also those
inside functions), for the tests that check which modules may reach which (``tests/test_architecture.py``
holds the rules). Every function takes the package folder, so a rule can be shown to fail on a small
package a test writes to a temporary folder.

- ``imports_of(path, root)``: the import statements of one file;
- ``graph(root)``: each module -> the package modules it imports (``from pkg import name`` counts as
  ``pkg.name`` when that is a module; importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, except
  the packages the importer itself lives in: they are already running when it runs);
- ``reachable(graph, start)``: everything ``start`` imports, directly or not;
- ``import_cycles(graph)``: the groups of modules that import each other round a circle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "neurodit"


@dataclass(frozen=True)
class Import:
    module: str  # importing module, e.g. "neurodit.report.figures"
    target: str  # imported module, e.g. "neurodit.tiling"
    names: tuple[str, ...]  # names of a ``from target import a, b``; () for ``import target``
    line: int


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> list[Import]:
    mod = module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [Import(mod, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(Import(mod, target, tuple(a.name for a in node.names), node.lineno))
    return out


def all_modules(root: Path = SRC) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def where(imp: Import) -> str:
    return f"{imp.module}:{imp.line} imports {imp.target}{' ' + str(list(imp.names)) if imp.names else ''}"


def graph(root: Path = SRC) -> dict[str, set[str]]:
    """{module: package modules it imports}, as the module docstring says."""
    files = all_modules(root)
    out: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets: set[str] = set()
        for imp in imports_of(path, root):
            targets |= {imp.target} | {f"{imp.target}.{n}" for n in imp.names}
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


def import_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that reach each other (strongly connected components), each
    sorted, in the order of their first module."""
    reach = {m: reachable(g, m) for m in g}
    groups = {tuple(sorted({m} | {t for t in reach[m] if m in reach[t]})) for m in g if m in reach[m]}
    return sorted(list(c) for c in groups if len(c) > 1)
