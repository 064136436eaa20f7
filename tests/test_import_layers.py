"""Imports point one way: cli -> stages (train, compress, deploy, bench, gan, explain, ...) -> data /
models / runs. A cycle between two of fercomp's packages or top-level modules fails here, naming
the import lines that close it (function-level imports count: they hide a cycle, not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fercomp"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """fercomp.train.fit -> fercomp.train; fercomp.cli -> fercomp.cli (a package or a top-level module)."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ['module:line', ...] for every import of fercomp inside fercomp."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    # `from . import zoo` names a module, not an attribute of the package
                    targets = [f"{target}.{a.name}" if not node.module else target for a in node.names]
                else:
                    targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.startswith("fercomp.") and _unit(target) != _unit(module):
                    graph.setdefault(_unit(module), {}).setdefault(_unit(target), []).append(f"{module}:{node.lineno}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_packages():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        lines = [f"{a} -> {b}: {', '.join(graph[a][b][:4])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(lines))


def test_the_check_sees_a_cycle():
    assert find_cycle({"a": {"b": ["a:1"]}, "b": {"c": ["b:1"]}, "c": {"a": ["c:1"]}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["a:1"]}, "b": {}}) is None
    graph = import_graph()
    assert "fercomp.train" in graph.get("fercomp.cli", {})  # the graph is the real one: cli imports train
    assert "fercomp.deploy" in graph.get("fercomp.train", {})  # evaluate goes through the predictor interface
