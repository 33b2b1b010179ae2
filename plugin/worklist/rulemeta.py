"""What the worklist pages show of each rule: title, catalogue id, published PPV."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plugin.errors import DxSafetyError

if TYPE_CHECKING:
    from plugin.rules import RuleSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMeta:
    title: str
    trigger: str | None = None  # the catalogue id (``SP-1``) labels and the dashboard join on
    published_ppv: float | None = None
    published_n: int | None = None
    citation: str | None = None
    description: str = ""


def rule_meta(ruleset: RuleSet) -> dict[str, RuleMeta]:
    """Rule id → its metadata."""
    meta = {}
    for rule in ruleset.rules:
        published = rule.published
        meta[rule.id] = RuleMeta(
            title=rule.title,
            trigger=rule.trigger,
            published_ppv=published.ppv if published else None,
            published_n=published.n if published else None,
            citation=published.citation if published else None,
            description=rule.description,
        )
    return meta


def load_rule_meta(rules_dir: Path | Sequence[Path]) -> dict[str, RuleMeta]:
    """:func:`rule_meta` of the rules in ``rules_dir`` (one root or several); empty (and a
    warning logged) when they cannot be loaded, so the worklist still serves its cases."""
    try:
        from plugin.rules import load_rules

        ruleset = load_rules(rules_dir)
    except (ImportError, DxSafetyError, OSError) as exc:
        log.warning("worklist: rule metadata unavailable (%s)", exc.__class__.__name__)
        return {}
    return rule_meta(ruleset)
