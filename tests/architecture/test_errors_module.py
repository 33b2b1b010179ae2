"""Every exception class is defined in ``plugin/errors.py`` (one hierarchy, one place to look).

Checked on the source: a class is an exception when one of its bases is a built-in exception,
a class of ``plugin/errors.py``, or (transitively) another such class of the module.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

ROOT = Path(__file__).parents[2] / "plugin"
ERRORS = ROOT / "errors.py"

BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def exception_classes(classes: list[ast.ClassDef], known: frozenset[str]) -> set[str]:
    """The names of ``classes`` that derive from a name in ``known`` or from each other."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cls in classes:
            bases = {_base_name(b) for b in cls.bases}
            if cls.name not in found and bases & (known | found):
                found.add(cls.name)
                changed = True
    return found


def _classes(path: Path) -> list[ast.ClassDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]


def defined_outside_errors(root: Path = ROOT) -> dict[str, set[str]]:
    """Exception classes by module, for every module but ``errors.py``. Bases are matched by
    name across all modules, so a subclass of an exception defined elsewhere is found too."""
    errors = root / "errors.py"
    classes = {p: _classes(p) for p in sorted(root.rglob("*.py"))}
    known = BUILTIN_EXCEPTIONS | exception_classes(classes[errors], BUILTIN_EXCEPTIONS)
    everywhere = exception_classes([c for cs in classes.values() for c in cs], known)
    out = {}
    for path, cs in classes.items():
        found = {c.name for c in cs if c.name in everywhere}
        if found and path != errors:
            out[path.relative_to(root.parent).as_posix()] = found
    return out


def test_exceptions_live_in_errors_py() -> None:
    found = defined_outside_errors()
    assert not found, f"define these in plugin/errors.py (and add them to its tree): {found}"


def test_the_check_sees_exceptions() -> None:
    tree = ast.parse(
        "import x\nclass A(ValueError): pass\nclass B(A): pass\nclass C(x.DxSafetyError): pass\n"
        "class D: pass\nclass E(D): pass\n"
    )
    known = BUILTIN_EXCEPTIONS | {"DxSafetyError"}
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert exception_classes(classes, known) == {"A", "B", "C"}


def test_errors_py_documents_every_class() -> None:
    """The docstring's tree names every exception class of the module."""
    tree = ast.parse(ERRORS.read_text())
    doc = ast.get_docstring(tree) or ""
    tree_part = doc.split("Hierarchy::", 1)[1].split("\n\n", 2)[1]
    missing = {
        name
        for name in exception_classes(_classes(ERRORS), BUILTIN_EXCEPTIONS)
        if f" {name} " not in tree_part and f" {name}\n" not in tree_part
    }
    assert missing <= {"FatalError"}, f"not in the docstring's tree: {sorted(missing)}"
