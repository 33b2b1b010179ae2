"""Each package's ``__all__`` is exactly what its ``__init__`` exports, as httpx's
test_exported_members checks: every public name the ``__init__`` defines and every name it
imports only to re-export is listed, and every listed name is bound and exists. Adding a
re-export or a public helper without listing it, or listing a name that is gone, fails
here. (The order of ``__all__`` is ruff's RUF022.)

Read from the source, not from ``vars(package)``: importing a submodule binds its name on
the package, so the runtime namespace depends on what was imported before; and a package
``__init__`` that does work (``plugin.cds``) imports names for its own use, not to export.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugin"


def _declares_all(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in _targets(node))
        for node in tree.body
    )


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return list(node.targets) if isinstance(node, ast.Assign) else [node.target]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def bindings(body: list[ast.stmt]) -> Iterator[tuple[str, bool]]:
    """(name, imported?) for each name a module body binds at import time, not counting
    ``from __future__`` and ``if TYPE_CHECKING:`` imports."""
    for node in body:
        if isinstance(node, ast.ImportFrom):
            if node.module != "__future__":
                yield from ((a.asname or a.name, True) for a in node.names if a.name != "*")
        elif isinstance(node, ast.Import):
            yield from ((a.asname or a.name.split(".")[0], True) for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, False
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in _targets(node):
                yield from ((n.id, False) for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If) and not _is_type_checking(node.test):
            yield from bindings(node.body)
            yield from bindings(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from bindings(block)


def used_names(tree: ast.Module) -> set[str]:
    """Names the module reads (its own code using an import, as opposed to re-exporting it)."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def packages_with_all() -> list[Path]:
    return sorted(
        init
        for init in PLUGIN.rglob("__init__.py")
        if _declares_all(ast.parse(init.read_text(encoding="utf-8")))
    )


def module_name(init: Path) -> str:
    return ".".join(init.parent.relative_to(ROOT).parts)


PACKAGES = packages_with_all()


def test_there_are_packages_to_check() -> None:
    assert {"plugin.rules", "plugin.rank", "plugin.cds"} <= {module_name(p) for p in PACKAGES}


@pytest.mark.parametrize("init", PACKAGES, ids=module_name)
def test_all_is_exactly_what_the_package_exports(init: Path) -> None:
    """Exported: every public name the ``__init__`` defines, and every name it imports
    without using it (a re-export). ``__all__`` lists all of them and nothing unbound
    (an import the ``__init__`` uses itself may be listed too)."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    bound = {name: imported for name, imported in bindings(tree.body)}
    used = used_names(tree)
    public = {name for name in bound if not name.startswith("_")}
    exported = {name for name in public if not bound[name] or name not in used}
    package = importlib.import_module(module_name(init))
    declared = list(package.__all__)
    assert len(declared) == len(set(declared)), "a name is listed twice"
    assert not exported - set(declared), (
        f"exported, not in __all__: {sorted(exported - set(declared))}"
    )
    assert not set(declared) - public, f"in __all__, not bound: {sorted(set(declared) - public)}"
    missing = [name for name in declared if not hasattr(package, name)]
    assert not missing, f"{module_name(init)}.__all__ names {missing}, which do not exist"
