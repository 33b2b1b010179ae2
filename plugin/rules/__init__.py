"""YAML e-trigger rules: loading (with file:line:col errors), semantics, tests."""

from plugin.rules.engine import (
    Rule,
    RuleSet,
    evaluate,
    evaluate_rule,
    finding_key,
    index_matches,
)
from plugin.rules.loader import load_rules

__all__ = [
    "Rule",
    "RuleSet",
    "evaluate",
    "evaluate_rule",
    "finding_key",
    "index_matches",
    "load_rules",
]
