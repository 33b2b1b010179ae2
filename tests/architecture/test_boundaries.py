"""FHIR JSON stays at the edge: rules and the ranker read only the timeline.

Modules that *load data* for a command (the rule-test runner's fixtures, training data
loading) may import the FHIR edge; the semantics (engine, selectors, features, model)
may not. Checked on the import statements of the source, so it cannot pass by accident
of import order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "plugin"
LOADERS = {"rules/testing.py", "rank/dataset.py"}  # the allowlist: see the module docstring


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def imports_fhir(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m.startswith(("plugin.fhir", "fhir.resources"))}


SEMANTIC = sorted(
    p
    for pkg in ("rules", "rank", "timeline")
    for p in (ROOT / pkg).rglob("*.py")
    if p.relative_to(ROOT).as_posix() not in LOADERS
)


@pytest.mark.parametrize("path", SEMANTIC, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_semantics_do_not_import_fhir(path):
    bad = imports_fhir(path)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: read the timeline instead"


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_the_allowlist_names_only_loaders_that_exist(name):
    path = ROOT / name
    assert path.is_file(), f"LOADERS names {name}, which does not exist: drop it"
    assert imports_fhir(path), f"{name} no longer imports the FHIR edge: drop it from LOADERS"


def test_there_is_something_to_check():
    assert len(SEMANTIC) >= 8


@pytest.mark.parametrize(
    "path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_library_code_never_prints(path):
    if path.relative_to(ROOT).parts[0] == "cli":
        return  # the command line is where printing belongs
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prints = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    assert not prints, f"{path.relative_to(ROOT)} prints at lines {prints}"
