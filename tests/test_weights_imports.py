"""The import graph of ``zoo.weights`` (imports inside functions included): no cycles, leaves stay leaves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "zoo" / "weights"


def module_imports(path: Path) -> set[str]:
    """Every ``zoo...`` module ``path`` imports, at any depth of the file (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("zoo"))
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (zoo uses absolute imports)"
            base = node.module or ""
            if not base.startswith("zoo"):
                continue
            out.add(base)
            # ``from zoo.weights import fit`` imports the module zoo.weights.fit
            out.update(f"{base}.{a.name}" for a in node.names if (REPO / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").is_file())
    return out


def weights_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(WEIGHTS.glob("*.py")):
        name = "zoo.weights" if path.stem == "__init__" else f"zoo.weights.{path.stem}"
        graph[name] = {m for m in module_imports(path) if m.startswith("zoo.weights.")} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_in_zoo_weights():
    graph = weights_graph()
    assert {"zoo.weights.fit", "zoo.weights.upstream", "zoo.weights.resolve", "zoo.weights.catalog"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("leaf", ["fit", "upstream", "errors", "integrity", "env", "schema"])
def test_leaf_modules_import_only_registry_and_errors(leaf):
    allowed = {"zoo.registry", "zoo.weights.errors", "zoo.weights"}
    if leaf == "schema":
        allowed.add("zoo.data.config")  # the manifest's preprocess section is a DataConfig (itself a leaf)
    imports = module_imports(WEIGHTS / f"{leaf}.py")
    assert imports <= allowed, f"zoo.weights.{leaf} imports {sorted(imports - allowed)}"


def test_every_public_name_of_zoo_weights_resolves():
    import zoo.weights

    for name in zoo.weights.__all__:
        assert getattr(zoo.weights, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zoo.weights.nope  # noqa: B018
