"""Warnings for ``dxsafety rules lint``: rules that load but probably do not say what their
author meant (see :func:`plugin.rules.validators.check_code_kinds`).

Kept apart from :func:`plugin.rules.load_rules`, which fails on errors only: a warning never
stops a scan, so only the linter reads the files a second time to look for them.
"""

from __future__ import annotations

from pathlib import Path

from plugin.errors import RuleProblem
from plugin.rules import validators
from plugin.rules.loader import find_valueset_dir, load_valuesets, rule_files
from plugin.rules.spans import load_yaml


def lint_warnings(path: str | Path) -> list[RuleProblem]:
    """Every warning (``severity == "warning"``) for the rules under ``path``, in file order.
    Call it after :func:`plugin.rules.load_rules` has accepted the same path."""
    root = Path(path)
    valuesets, _, _ = load_valuesets(find_valueset_dir(root if root.is_dir() else root.parent))
    warnings: list[RuleProblem] = []
    for file in rule_files(root):
        data, smap, _ = load_yaml(file)
        if isinstance(data, dict):
            warnings += validators.check_code_kinds(data, smap, valuesets)
    return warnings
