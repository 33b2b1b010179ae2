"""Fixtures of the population-engine tests: the catalogue, loaded once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.rules import RuleSet, load_rules

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(ROOT / "rules")
