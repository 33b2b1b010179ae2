"""No import cycles among the ``plugin`` modules.

Every import that can run counts: at module level and inside functions. A function-level
import hides a cycle from the interpreter, it does not remove it: both cycles issue 10 found
(``timeline/build`` <-> ``timeline/spec``, ``worklist/web`` <-> its route modules) were closed
by one. Only imports under ``if TYPE_CHECKING:`` are exempt (they never run). Deferred imports
of *optional* parts (the ranker, the CDS service) are fine as long as they point one way.

``from plugin.a import b`` is an edge to the module ``plugin.a.b`` when there is one, else to
``plugin.a``; importing a module adds no edge to its parent packages (their ``__init__`` runs
first, which is no cycle of ours). Checked on the source, like the boundary test, so it cannot
pass by accident of import order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2] / "plugin"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level, in functions and classes, in
    ``if``/``try``/``with`` blocks; not those under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from runtime_imports(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from runtime_imports([child])
                elif isinstance(child, ast.excepthandler):
                    yield from runtime_imports(child.body)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the plugin modules it imports."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in paths else base)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
    return sorted(found)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (runtime imports, any level):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert len(graph) >= 100
    assert "plugin.fhir.resource_types" in graph["plugin.fhir.client"]
    assert "plugin.worklist.deps" in graph["plugin.worklist.routes_cases"]


def test_a_cycle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "plugin"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from plugin.a import y\n")
    (pkg / "a" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from plugin.a import z\n"
        "from plugin.a.x import f\n"
    )
    (pkg / "a" / "z.py").write_text("import plugin.a.y\n\ndef g():\n    from plugin.a import x\n")
    assert cycles(import_graph(pkg)) == [["plugin.a.x", "plugin.a.y"]]
