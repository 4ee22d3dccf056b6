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
  ``neurodit.train``, ``neurodit.sample`` or ``neurodit.bench``;
- sampling, the judge and the report (``neurodit.sample``, ``neurodit.metrics``, ``neurodit.report``)
  import nothing of ``neurodit.train``;
- the judge (``neurodit.metrics``) imports nothing of ``neurodit.downstream``: its small CNN and the
  routine that trains it come from the model layer, as the downstream classifier's do;
- no import circles between modules (function-level imports count: a circle that only works because one
  side imports late is still two modules that cannot be understood apart);
- a generator's name (``dit``, ``ddpm3d``, ``pca``) is spelled as a string only in ``neurodit.generators``
  (the registry and the generators it names): every other module asks the registry.

Every rule is a function of a package folder, so each is also shown to fail on a small package that a
test writes to a temporary folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from import_graph import SRC, Import, all_modules, graph, import_cycles, imports_of, where, within

# What the report may take from the tiling modules: the public rendering pieces, nothing else
# (no file readers such as tile_file/untile_file, no private helpers, no whole-module imports).
REPORT_MAY_USE = {
    "neurodit.tiling": {"TilingSpec", "make_spec", "volume_to_mosaic"},
    "neurodit.mosaic_files": {"save_mosaic_png", "write_gray_png"},
}


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    # guard against a vacuous pass: the train loop imports the prepared-data reader inside a function
    loop = [i.target for i in imports_of(SRC / "train" / "loop.py")]
    assert "neurodit.data.prepare" in loop and "neurodit.diffusion" in loop
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


# --------------------------------------------------------------------------- circles
def write_package(root: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``root`` with the given module sources (relative paths); returns it."""
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_no_import_circles():
    cycles = import_cycles(graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "stage.py": "from pkg.render import draw\n\ndef run():\n    return draw()\n",
        "render/__init__.py": "",
        "render/draw.py": "def draw():\n    from pkg import stage  # late, but a circle all the same\n    return stage\n",
        "other.py": "import pkg.stage\n",
    })
    g = graph(pkg)
    assert g["pkg.stage"] == {"pkg.render", "pkg.render.draw"} and g["pkg.other"] == {"pkg.stage"}
    assert import_cycles(g) == [["pkg.render.draw", "pkg.stage"]]
    (pkg / "render" / "draw.py").write_text("def draw():\n    return 1\n")
    assert import_cycles(graph(pkg)) == []


# --------------------------------------------------------------------------- training stays behind its users
TRAIN_FREE = ("neurodit.sample", "neurodit.metrics", "neurodit.report")  # sampling, the judge, the report


def train_imports(root: Path = SRC, users: tuple[str, ...] = TRAIN_FREE) -> list[str]:
    top = root.name
    return [where(i) for m, p in all_modules(root).items()
            if any(within(m, u.replace("neurodit", top, 1)) for u in users)
            for i in imports_of(p, root) if within(i.target, f"{top}.train")]


def test_sampling_judge_and_report_import_nothing_of_train():
    assert not train_imports(), train_imports()


def test_the_judge_imports_nothing_of_downstream():
    bad = [where(i) for m, p in all_modules().items() if within(m, "neurodit.metrics")
           for i in imports_of(p) if within(i.target, "neurodit.downstream")]
    assert not bad, bad
    # not vacuous: c2st reaches the shared CNN through a function-level import
    assert "neurodit.models.small_cnn" in graph()["neurodit.metrics.c2st"]


def test_a_train_import_in_the_judge_is_found(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "", "train/__init__.py": "", "metrics/__init__.py": "", "sample.py": "",
        "metrics/c2st.py": "def f():\n    from pkg.train import loop\n    return loop\n",
    })
    assert train_imports(pkg, ("neurodit.sample", "neurodit.metrics")) == [
        "pkg.metrics.c2st:2 imports pkg.train ['loop']"]


# --------------------------------------------------------------------------- generator names
def generator_names() -> tuple[str, ...]:
    from neurodit.generators.base import REGISTRY

    return tuple(REGISTRY)


def name_literals(root: Path, names: tuple[str, ...], home: str) -> list[str]:
    """``module:line 'name'`` for every string constant equal to a generator name outside ``home``
    (docstrings and longer strings that merely mention a name do not count)."""
    bad = []
    for m, p in all_modules(root).items():
        if within(m, home):
            continue
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                bad.append(f"{m}:{node.lineno} {node.value!r}")
    return bad


def test_generator_names_are_spelled_only_in_the_registry():
    names = generator_names()
    assert {"dit", "ddpm3d", "pca"} <= set(names)
    bad = name_literals(SRC, names, "neurodit.generators")
    assert not bad, "generator names outside neurodit.generators (ask the registry): " + ", ".join(bad)


def test_a_generator_name_outside_the_registry_is_found(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "", "generators/__init__.py": "REGISTRY = {'dit': 1, 'ddpm3d': 2}\n",
        "loop.py": "\"\"\"Trains dit and ddpm3d.\"\"\"\ndef f(g):\n    return g == 'ddpm3d' or 'dit runs'\n",
    })
    assert name_literals(pkg, ("dit", "ddpm3d"), "pkg.generators") == ["pkg.loop:3 'ddpm3d'"]
