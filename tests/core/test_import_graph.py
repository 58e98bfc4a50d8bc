"""The import graph of the five packages, built from the source (ast), says what depends on
what: no cycles between modules, core imports no vertical, no vertical imports another.

Edges are module-level imports and function-level imports of the packages' own modules
(a function-local import hides a dependency, it does not remove it); only an import
marked with a ``# lazy`` comment on its line is left out of the cycle check (for modules
that pull in heavy optional dependencies). No edge at all may cross the layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "finance", "medical", "driving", "dashboard")
VERTICALS = ("finance", "medical", "driving")
LAZY_MARK = "# lazy"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module of ours an imported name lands in (``a.b.c`` -> the longest module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(node: ast.AST, module: str, is_package: bool):
    """``(target module, lineno)`` of one import statement, ours only."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule or an attribute
    for name in names:
        target = _target(name)
        if target is not None and target != module:
            yield target, node.lineno


def _edges() -> list[tuple[str, str, bool, bool]]:
    """``(importer, imported, function_level, lazy)`` for every import of our modules."""
    edges = []
    for module, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        function_nodes = {id(n) for f in ast.walk(tree)
                          if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                          for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, line in _imports(node, module, path.name == "__init__.py"):
                    lazy = LAZY_MARK in lines[line - 1]
                    edges.append((module, target, id(node) in function_nodes, lazy))
    return edges


EDGES = _edges()


def _package(module: str) -> str:
    return module.split(".")[0]


def _cycles(package: str) -> list[list[str]]:
    """Strongly connected components (> 1 module) of ``package``'s non-lazy import graph."""
    graph: dict[str, set[str]] = {}
    for a, b, _, lazy in EDGES:
        if not lazy and _package(a) == _package(b) == package:
            graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", ["core", "finance", "dashboard", "medical", "driving"])
def test_no_import_cycles(package):
    assert _cycles(package) == []


def test_the_graph_sees_hidden_imports():
    """The checker itself: a function-level import is an edge, ``# lazy`` marks it."""
    by_pair = {(a, b): (function_level, lazy) for a, b, function_level, lazy in EDGES}
    assert by_pair[("core.tabular.detector", "core.estimator")] == (False, False)
    assert by_pair[("core", "core.tabular.detector")] == (True, True)   # core.__getattr__
    assert len(MODULES) > 50 and {"core.cli", "finance.spec", "dashboard.ui"} <= set(MODULES)


def test_core_imports_no_vertical_and_no_dashboard():
    crossing = [(a, b) for a, b, *_ in EDGES
                if _package(a) == "core" and _package(b) != "core"]
    assert crossing == []


def test_no_vertical_imports_another_or_the_dashboard():
    crossing = [(a, b) for a, b, *_ in EDGES
                if _package(a) in VERTICALS and _package(b) not in ("core", _package(a))]
    assert crossing == []


@pytest.mark.parametrize("package", ["core", "dashboard", "finance", "medical", "driving"])
def test_own_imports_are_at_the_top(package):
    """A function-local import of our own modules hides a dependency: only ``# lazy`` ones
    (heavy optional dependencies behind them) may stay inside functions."""
    hidden = sorted({(a, b) for a, b, function_level, lazy in EDGES
                     if _package(a) == package and function_level and not lazy})
    assert hidden == []
