"""The import graph of the core (``zoo/``) and the plugins (``plugins/``) has no cycles, counting imports
made inside functions (issue 12: data runs one way, recipe -> registry -> model -> embed -> index ->
post-process -> metric).

The graph is read from the source with :mod:`ast`: an edge ``a -> b`` for every ``import b`` /
``from b import x`` in module ``a`` (``from pkg import mod`` is an edge to the submodule ``pkg.mod``),
at any depth, except under ``if TYPE_CHECKING:`` (never executed). Only modules of this repository
are nodes; third-party imports are ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: top-level import name -> source folder (pyproject's package-dir mapping)
ROOTS = {"zoo": REPO / "zoo", "zoo_configs": REPO / "configs"}
for _d in sorted((REPO / "plugins").iterdir()):
    if (_d / "__init__.py").is_file():
        ROOTS[_d.name] = _d
    for _sub in sorted(_d.glob("*/__init__.py")):  # plugin distributions: plugins/zoo-glr2019/zoo_glr2019
        ROOTS[_sub.parent.name] = _sub.parent


def _modules() -> dict[str, Path]:
    out = {}
    for top, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            if "build" in path.relative_to(folder).parts:
                continue
            rel = path.relative_to(folder).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def target(name: str) -> None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    return {m: _imports(m, p) for m, p in MODULES.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def _a_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component (for the failure message)."""
    members = set(comp)
    start = comp[0]
    path, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(w for w in graph[node] if w in members)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        node = next(w for w in nxt)
        path.append(node)
        seen.add(node)


def test_the_scan_sees_the_package_layout():
    assert {"zoo", "zoo.factory", "zoo.assembly", "zoo.weights.loading", "zoo_configs.plugin"} <= set(MODULES)
    graph = import_graph()
    assert "zoo.assembly" in graph["zoo.factory"]  # the factory sits above assembly
    assert "zoo.registry" in graph["zoo.recipes"]


def test_no_import_cycles_in_core_and_plugins():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (imports inside functions included):\n" + "\n".join(
        " -> ".join(_a_cycle(graph, comp)) for comp in cycles
    )


def test_the_cycle_finder_finds_a_hidden_function_level_cycle(tmp_path, monkeypatch):
    """The check itself can fail: a cycle made only by an import inside a function is reported."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from zoo import factory\n")
    monkeypatch.setitem(MODULES, "zoo.fake_leaf", src)
    assert "zoo.factory" in _imports("zoo.fake_leaf", src)


@pytest.mark.parametrize("core", sorted(m for m in MODULES if m == "zoo" or m.startswith("zoo.")))
def test_the_core_never_imports_a_plugin(core):
    """Plugins import the core, never the reverse (the core finds them through entry points)."""
    plugin_tops = {m.split(".")[0] for m in MODULES} - {"zoo"}
    bad = sorted(t for t in _imports(core, MODULES[core]) if t.split(".")[0] in plugin_tops)
    assert not bad, f"{core} imports plugin modules {bad}"
