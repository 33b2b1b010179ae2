"""YAML e-trigger rules: loading (with file:line:col errors), semantics, tests.

The public API: :func:`load_rules` (one root or several), :func:`evaluate` and
:func:`evaluate_rule` (findings), :func:`index_matches` (does an event start a rule's
pattern), and the questions CDS asks — :func:`open_findings`, :func:`followup_order`,
:func:`closing_codes`, :func:`has_clinical_index`, :func:`advises_at_discharge`; and which
absence rules a source cannot evaluate for want of data, :func:`data_gaps` (issue 11).
Logic types live in :mod:`plugin.rules.logic` behind one registry.
"""

from plugin.rules.api import (
    advises_at_discharge,
    closing_codes,
    followup_order,
    has_clinical_index,
    open_findings,
)
from plugin.rules.codesets import CodeSet
from plugin.rules.engine import (
    Rule,
    RuleSet,
    evaluate,
    evaluate_rule,
    finding_key,
    index_matches,
)
from plugin.rules.followup import FollowUp
from plugin.rules.gaps import DataGap, data_gaps
from plugin.rules.loader import load_rules
from plugin.rules.schema import Published, ValueSetSpec

__all__ = [
    "CodeSet",
    "DataGap",
    "FollowUp",
    "Published",
    "Rule",
    "RuleSet",
    "ValueSetSpec",
    "advises_at_discharge",
    "closing_codes",
    "data_gaps",
    "evaluate",
    "evaluate_rule",
    "finding_key",
    "followup_order",
    "has_clinical_index",
    "index_matches",
    "load_rules",
    "open_findings",
]
