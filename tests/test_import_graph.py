"""The package's import graph has no cycles.

Every module under ``src/gradinv`` is parsed with :mod:`ast` (nothing is imported). An edge
``a -> b`` is any ``import`` / ``from ... import`` in ``a`` naming the gradinv module ``b``, wherever
it stands: at the top, under ``if TYPE_CHECKING:`` and inside functions. All three count, because
each is a dependency of the design: a type-only import still ties ``a`` to ``b``'s definitions, and
a function-local import that dodges a circular import at run time leaves the circle in place.

Resolution:

* ``import gradinv.x.y`` and ``from gradinv.x.y import name`` -> ``gradinv.x.y``;
* ``from gradinv.x import y`` -> ``gradinv.x.y`` when that is a module, else ``gradinv.x`` (the
  package ``__init__`` that re-exports ``y``);
* relative imports are resolved against the importing module's package;
* importing ``gradinv.x.y`` does *not* add the implicit edge to the parent package ``gradinv.x``
  (Python runs its ``__init__`` first, but every submodule would then close a circle with an
  ``__init__`` that imports it); a module importing itself is not an edge.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gradinv"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    kind: str  # "top-level", "TYPE_CHECKING" or "local"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in the module with where it stands."""

    def visit(node: ast.AST, kind: str) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, "local")
            elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "top-level":
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), "TYPE_CHECKING")
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                yield from visit(child, kind)

    return visit(tree, "top-level")


def _resolve(name: str, modules: frozenset[str]) -> str | None:
    """The longest prefix of ``name`` that is a package module (``None`` outside the package)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_edges(root: Path = SRC, package: str = PACKAGE) -> list[Edge]:
    files = sorted((root / package).rglob("*.py"))
    modules = frozenset(module_name(f, root) for f in files)
    edges: list[Edge] = []
    for f in files:
        source = module_name(f, root)
        is_pkg = f.name == "__init__.py"
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node, kind in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_resolve(alias.name, modules) for alias in node.names]
            else:
                if node.level:
                    base = source.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in modules else _resolve(origin, modules))
            for target in dict.fromkeys(targets):  # one edge per statement and target
                if target is not None and target != source:
                    edges.append(Edge(source, target, node.lineno, kind))
    return edges


def _successors(graph: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    succ = {n: sorted(set(vs) - {n}) for n, vs in graph.items()}  # self-loops are not circles
    for vs in list(succ.values()):
        for v in vs:
            succ.setdefault(v, [])
    return succ


def tangles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm), each sorted.

    >>> tangles({"a": ["b"], "b": ["c", "a"], "c": ["a"], "d": ["a"]})
    [['a', 'b', 'c']]
    """
    succ = _successors(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            strongconnect(v)
    return sorted(components)


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per tangle: the shortest closed path ``[a, ..., a]`` through its smallest node.

    >>> find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]})
    [['a', 'b', 'c', 'a']]
    """
    succ = _successors(graph)
    cycles = []
    for comp in tangles(graph):
        members, start = set(comp), comp[0]
        parent: dict[str, str] = {}  # breadth-first from start until it is reached again
        frontier = [start]
        while start not in parent:
            nxt = []
            for v in frontier:
                for w in succ[v]:
                    if w in members and w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while True:
            path.append(parent[path[-1]])
            if path[-1] == start:
                break
        cycles.append(path[::-1])
    return cycles


def describe(graph: Mapping[str, Iterable[str]], edges: Iterable[Edge]) -> str:
    """Each tangle's modules, one cycle through it, and the import lines that close that cycle."""
    by_pair: dict[tuple[str, str], list[Edge]] = {}
    for e in edges:
        by_pair.setdefault((e.source, e.target), []).append(e)
    lines = []
    for comp, cycle in zip(tangles(graph), find_cycles(graph)):
        lines.append(f"tangle of {len(comp)} modules: {', '.join(comp)}")
        lines.append("  cycle: " + " -> ".join(cycle))
        for a, b in itertools.pairwise(cycle):
            how = ", ".join(f"line {e.line} ({e.kind})" for e in by_pair[(a, b)])
            lines.append(f"    {a} -> {b}: {how}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_cycle_finder_on_synthetic_graphs() -> None:
    assert find_cycles({"a": ["b"], "b": ["c"], "c": []}) == []
    assert find_cycles({"a": ["a"]}) == []  # self-loops are not circles
    assert find_cycles({"a": ["b"], "b": ["a"]}) == [["a", "b", "a"]]
    # Two separate circles, one with a chord; each reported once, as a shortest loop through its
    # smallest node.
    graph = {"x": ["y"], "y": ["z", "x"], "z": ["x"], "p": ["q"], "q": ["r"], "r": ["p"], "s": ["p"]}
    assert tangles(graph) == [["p", "q", "r"], ["x", "y", "z"]]
    assert find_cycles(graph) == [["p", "q", "r", "p"], ["x", "y", "x"]]


def test_edges_cover_every_import_form(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import pkg.sub.c\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.b import B\n"
        "def f():\n"
        "    from pkg import sub\n"
        "    from . import b\n"
    )
    (pkg / "b.py").write_text("from pkg.sub import C\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import C\n")
    (pkg / "sub" / "c.py").write_text("import os\nfrom ..a import A\n")
    got = {(e.source, e.target, e.kind) for e in import_edges(tmp_path, "pkg")}
    assert got == {
        ("pkg", "pkg.a", "top-level"),
        ("pkg.a", "pkg.sub.c", "top-level"),
        ("pkg.a", "pkg.b", "TYPE_CHECKING"),
        ("pkg.a", "pkg.sub", "local"),
        ("pkg.a", "pkg.b", "local"),
        ("pkg.b", "pkg.sub", "top-level"),
        ("pkg.sub", "pkg.sub.c", "top-level"),
        ("pkg.sub.c", "pkg.a", "top-level"),
    }
    graph: dict[str, list[str]] = {}
    for e in import_edges(tmp_path, "pkg"):
        graph.setdefault(e.source, []).append(e.target)
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.c", "pkg.a"]]


def test_gradinv_imports_form_no_cycle() -> None:
    edges = import_edges()
    assert len({e.source for e in edges}) > 50, "the walk found too few modules; is SRC right?"
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
    found = tangles(graph)
    assert not found, "import cycles in gradinv:\n" + describe(graph, edges)
