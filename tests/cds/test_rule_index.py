"""Issue 14 item 5: the compiled rule index (``plugin.rules.api.rule_index``) skips only rules
that cannot start on this record: for every rule it leaves out, the engine finds no hit, on
Synthea patients and the CDS test patients; and it does leave most rules out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugin.fhir.parse import timeline_from_resources
from plugin.rules import load_rules
from plugin.rules.api import open_findings, rule_index
from plugin.rules.engine import hits
from plugin.timeline.model import Timeline
from tests.cds import patients as P
from tests.cds.helpers import NOW, REPO

SYNTHEA = Path("/work/shared/data/synthea-r4")


@pytest.fixture(scope="module")
def ruleset():  # type: ignore[no-untyped-def]
    return load_rules(REPO / "rules")


def _timelines() -> list[tuple[str, Timeline, datetime]]:
    out = []
    for name, resources in (
        ("fit", P.fit_patient("p", NOW)),
        ("dizzy", P.dizzy_patient("d", NOW)),
    ):
        out.append((name, timeline_from_resources(resources, validate="fast"), NOW))
    for path in sorted(SYNTHEA.glob("*.json"))[:6]:
        bundle = json.loads(path.read_text())
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        tl = timeline_from_resources(resources, validate="fast")
        last = max((e.t for e in tl.events), default=datetime(2020, 1, 1, tzinfo=UTC))
        out.append((path.stem[:20], tl, last + timedelta(days=30)))
    return out


def test_rules_left_out_have_no_hits(ruleset) -> None:  # type: ignore[no-untyped-def]
    index = rule_index(ruleset)
    skipped_total = 0
    timelines = _timelines()
    assert len(timelines) >= 8
    for name, tl, now in timelines:
        kept = {r.id for r in index.candidates(tl)}
        skipped = [r for r in ruleset.rules if r.id not in kept]
        skipped_total += len(skipped)
        for rule in skipped:
            assert list(hits(rule, tl, as_of=now)) == [], (name, rule.id)
        lookback = timedelta(days=36500)
        assert open_findings(index.candidates(tl), tl, now=now, lookback=lookback) == (
            open_findings(ruleset, tl, now=now, lookback=lookback)
        ), name
    assert skipped_total > len(timelines) * len(ruleset.rules) // 3  # it does prune (~44 %)
