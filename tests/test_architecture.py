"""The import graph of ``src/neurodit``, read with ``ast`` (every import, also those inside functions).

Rules (docs/ARCHITECTURE.md, "Layers"):
- the module defining ``volume_to_mosaic`` (pure tiling) imports nothing of the project but
  ``neurodit.errors``;
- ``neurodit.report`` renders saved artifacts only: it imports nothing of ``neurodit.train``,
  ``neurodit.sample``, ``neurodit.runs`` or ``neurodit.bench``; of the tiling modules only the public
  names in ``REPORT_MAY_USE`` (by ``from ... import name``), and no ``nibabel`` (no NIfTI reader of its
  own: volumes come through ``neurodit.data``);
- ``neurodit.sample`` and ``neurodit.bench`` import nothing of ``neurodit.train``;
- the shared layers below training (``neurodit.diffusion``, ``neurodit.runs``) import nothing of
  ``neurodit.train``, ``neurodit.sample`` or ``neurodit.bench``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "neurodit"

# What the report may take from the tiling modules: the public rendering pieces, nothing else
# (no file readers such as tile_file/untile_file, no private helpers, no whole-module imports).
REPORT_MAY_USE = {
    "neurodit.tiling": {"TilingSpec", "make_spec", "volume_to_mosaic"},
    "neurodit.mosaic_files": {"save_mosaic_png", "write_gray_png"},
}


@dataclass(frozen=True)
class Import:
    module: str  # importing module, e.g. "neurodit.report.figures"
    target: str  # imported module, e.g. "neurodit.tiling"
    names: tuple[str, ...]  # names of a ``from target import a, b``; () for ``import target``
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    mod = module_name(path)
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


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def where(imp: Import) -> str:
    return f"{imp.module}:{imp.line} imports {imp.target}{' ' + str(list(imp.names)) if imp.names else ''}"


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    # guard against a vacuous pass: the train loop imports tiling inside functions
    loop = [i.target for i in imports_of(SRC / "train" / "loop.py")]
    assert "neurodit.tiling" in loop and "neurodit.diffusion" in loop
    assert len(all_modules()) > 40


def test_pure_tiling_imports_only_errors_of_the_project():
    defining = [m for m, p in all_modules().items()
                if any(isinstance(n, ast.FunctionDef) and n.name == "volume_to_mosaic"
                       for n in ast.walk(ast.parse(p.read_text())))]
    assert defining == ["neurodit.tiling"]
    project = {i.target for i in imports_of(all_modules()[defining[0]]) if within(i.target, "neurodit")}
    assert project <= {"neurodit.errors"}, project


def report_imports() -> list[Import]:
    return [i for m, p in all_modules().items() if within(m, "neurodit.report") for i in imports_of(p)]


@pytest.mark.parametrize("banned", ["neurodit.train", "neurodit.sample", "neurodit.runs", "neurodit.bench"])
def test_report_imports_no_training_or_sampling(banned):
    bad = [where(i) for i in report_imports() if within(i.target, banned)]
    assert not bad, bad


def test_report_uses_only_public_rendering_pieces_of_tiling():
    bad = []
    for i in report_imports():
        for module, allowed in REPORT_MAY_USE.items():
            if within(i.target, module) and (not i.names or not set(i.names) <= allowed):
                bad.append(where(i))
    assert not bad, bad


def test_report_has_no_nifti_reader():
    bad = [where(i) for i in report_imports() if within(i.target, "nibabel")]
    assert not bad, bad


@pytest.mark.parametrize("module", ["neurodit.sample", "neurodit.bench"])
def test_sample_and_bench_import_nothing_from_train(module):
    bad = [where(i) for i in imports_of(all_modules()[module]) if within(i.target, "neurodit.train")]
    assert not bad, bad


@pytest.mark.parametrize("package", ["neurodit.diffusion", "neurodit.runs"])
def test_shared_layers_do_not_import_their_users(package):
    mods = [p for m, p in all_modules().items() if within(m, package)]
    assert mods
    bad = [where(i) for p in mods for i in imports_of(p)
           if any(within(i.target, u) for u in ("neurodit.train", "neurodit.sample", "neurodit.bench"))]
    assert not bad, bad
