"""Plugins depend on the core only: no module under plugins/ imports another ``zoo_*`` plugin package.

Every import is scanned, including imports inside functions and relative imports; shared parts come
through the registry (e.g. DOLG's GeM via ``{component: pooling, type: gem}``) or the public core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _package_roots() -> dict[Path, str]:
    """Plugin package folder -> its import name (``plugins/zoo_pooling`` and ``plugins/zoo-glr2019/zoo_glr2019``)."""
    roots = {}
    for init in sorted(PLUGINS.rglob("__init__.py")):
        folder = init.parent
        if {"build", "dist"} & set(folder.relative_to(PLUGINS).parts):
            continue  # copies a wheel build leaves in the tree (tests/test_weights_wheel.py), not sources
        if not (folder.parent / "__init__.py").exists() and folder.name.startswith("zoo_"):
            roots[folder] = folder.name
    return roots


ROOTS = _package_roots()
MODULES = sorted((py, pkg) for root, pkg in ROOTS.items() for py in root.rglob("*.py"))


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``tree`` (relative ones resolved in ``package``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, package))  # relative imports stay inside the own package
            else:
                out.append((node.lineno, node.module or ""))
    return out


def foreign_plugin_imports(source: str, where: str, package: str) -> list[str]:
    """``where:line imports NAME`` for each import of a ``zoo_*`` package other than ``package``."""
    bad = []
    for line, name in imported_modules(ast.parse(source, filename=where), package):
        top = name.split(".")[0]
        if top.startswith("zoo_") and top != package:
            bad.append(f"{where}:{line} imports {name}")
    return bad


def test_every_plugin_package_is_scanned():
    names = set(ROOTS.values())
    assert {"zoo_backbones", "zoo_pooling", "zoo_converters", "zoo_postprocess", "zoo_glr2019"} <= names
    assert len(MODULES) > 40


@pytest.mark.parametrize("path,package", MODULES, ids=lambda v: str(v.relative_to(PLUGINS)) if isinstance(v, Path) else None)
def test_plugin_imports_only_core_stdlib_and_third_party(path, package):
    where = str(path.relative_to(PLUGINS.parent))
    assert foreign_plugin_imports(path.read_text(encoding="utf-8"), where, package) == []


def test_scanner_finds_imports_inside_functions():
    source = (
        "import zoo\nimport numpy\nfrom zoo_pooling import plugin\n"
        "def f():\n    from zoo_pooling.gem import GeM\n    from . import necks\n"
        "    if True:\n        import zoo_backbones.dolg as d\n"
    )
    # as if the module lived in zoo_pooling: its own package, zoo and numpy are fine
    assert foreign_plugin_imports(source, "mod.py", "zoo_pooling") == ["mod.py:8 imports zoo_backbones.dolg"]
    # as if it lived in zoo_backbones: the zoo_pooling imports are caught, the relative one is its own
    assert sorted(foreign_plugin_imports(source, "mod.py", "zoo_backbones")) == [
        "mod.py:3 imports zoo_pooling", "mod.py:5 imports zoo_pooling.gem",
    ]
