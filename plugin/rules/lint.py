"""Warnings for ``dxsafety rules lint``: rules that load but probably do not say what their
author meant (see :func:`plugin.rules.validators.check_code_kinds`).

Kept apart from :func:`plugin.rules.load_rules`, which fails on errors only: a warning never
stops a scan, so only the linter reads the files a second time to look for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from plugin.errors import RuleProblem
from plugin.rules import validators
from plugin.rules.codesets import CodeSet
from plugin.rules.loader import find_valueset_dir, load_valuesets, rule_files
from plugin.rules.spans import load_yaml


def lint_warnings(
    path: str | Path, *, valuesets: Mapping[str, CodeSet] | None = None
) -> list[RuleProblem]:
    """Every warning (``severity == "warning"``) for the rules under ``path``, in file order.
    Call it after :func:`plugin.rules.load_rules` has accepted the same path. ``valuesets``:
    the value sets the rules were loaded with (``RuleSet.valuesets``) — a site's rules use
    the catalogue's too; by default, those of ``path``'s own value-set directory."""
    root = Path(path)
    if valuesets is None:
        valuesets = load_valuesets(find_valueset_dir(root if root.is_dir() else root.parent))[0]
    warnings: list[RuleProblem] = []
    for file in rule_files(root):
        data, smap, _ = load_yaml(file)
        if isinstance(data, dict):
            warnings += validators.check_code_kinds(data, smap, valuesets)
    return warnings + text_concept_warnings() + normalize_table_warnings()


def normalize_table_warnings() -> list[RuleProblem]:
    """Warnings (R501) for the normalisation tables every engine reads
    (``plugin/normalize/tables``: allowed values, units UCUM must read, conflicting rows)."""
    from plugin.errors import SourceLocation
    from plugin.normalize.check import check_tables

    return [
        RuleProblem(SourceLocation(str(path), line, 1), "R501", message, severity="warning")
        for path, line, message in check_tables()
    ]


def text_concept_warnings() -> list[RuleProblem]:
    """Warnings (R401) for report-text concepts whose own documented examples the matcher
    gets wrong (``plugin/text/concepts.yaml``: ``match`` must give an affirmed mention,
    ``no_match`` must not), so that a lexicon or concept edit that breaks them is seen."""
    from plugin.errors import SourceLocation
    from plugin.text import affirmed_concepts, default_concepts
    from plugin.text.context import CONCEPTS

    out: list[RuleProblem] = []
    for name, concept in default_concepts().items():
        cases = [(ex, True) for ex in concept.examples_match]
        cases += [(ex, False) for ex in concept.examples_no_match]
        for example, want in cases:
            if (name in affirmed_concepts(example)) is not want:
                what = "should match but does not" if want else "should not match but does"
                where = SourceLocation(str(CONCEPTS), 1, 1)
                message = f"{name}: {example!r} {what}"
                out.append(RuleProblem(where, "R401", message, severity="warning"))
    return out
