"""Issue 14 item 5: the CDS fast path (``plugin.cds.fastpath``) skips only Observations no
rule can read: the cards and findings are the same as with every resource read, on the
bench's 500-resource prefetch, on the CDS test patients and on Synthea patients; the worklist
snapshot still gets the full timeline; and a rule set it cannot reason about disables it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plugin.cds.advice import Advice, Advisor
from plugin.cds.fastpath import read_plan
from plugin.cds.services import SERVICES
from plugin.fhir.parse import timeline_from_resources
from plugin.rules import RuleSet, load_rules
from plugin.rules.api import open_findings
from plugin.rules.engine import evaluate
from plugin.worklist.snapshot import snapshot
from tests.cds import patients as P
from tests.cds.helpers import NOW, REPO

SYNTHEA = Path("/work/shared/data/synthea-r4")
PID = "bench-patient"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


def _advisors(ruleset: RuleSet) -> tuple[Advisor, Advisor]:
    kw: dict[str, Any] = dict(
        ruleset=ruleset,
        model_dir=None,
        base_url="http://b",
        lookback_days=365,
        risk_threshold=0.05,
        validate="fast",
    )
    return Advisor.build(**kw, fast_path=True), Advisor.build(**kw, fast_path=False)


def _without_uuids(node: Any) -> Any:
    """Card JSON without the fresh per-call uuids."""
    if isinstance(node, dict):
        return {k: _without_uuids(v) for k, v in node.items() if k != "uuid"}
    if isinstance(node, list):
        return [_without_uuids(v) for v in node]
    return node


def _same(fast: Advice, full: Advice) -> None:
    assert [_without_uuids(c.model_dump(mode="json")) for c in fast.cards] == [
        _without_uuids(c.model_dump(mode="json")) for c in full.cards
    ]
    assert fast.findings == full.findings
    assert [i.finding_key for i in fast.issued] == [i.finding_key for i in full.issued]
    # the worklist snapshots show every event near the finding, as without the fast path
    for f in full.findings:
        assert snapshot(f, fast.snapshot_timeline()) == snapshot(f, full.timeline)
    if full.findings:
        assert len(fast.snapshot_timeline().events) > len(fast.timeline.events)


def _bench_patient(now: datetime) -> list[dict[str, Any]]:
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    try:
        from cds_bench import bench_patient
    finally:
        sys.path.remove(str(REPO / "bench"))
    resources: list[dict[str, Any]] = bench_patient(now)
    return resources


def _advise_all(fast: Advisor, full: Advisor, resources: list[dict[str, Any]], pid: str,
                now: datetime, encounter: str | None = None) -> int:  # fmt: skip
    """Every hook on ``resources``; the number of cards compared."""
    compared = 0
    calls: list[tuple[str, dict[str, Any]]] = [
        ("dxsafety-patient-view", {"userId": "Practitioner/b", "patientId": pid}),
        (
            "dxsafety-order-sign",
            {
                "userId": "Practitioner/b",
                "patientId": pid,
                "draftOrders": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": P.colonoscopy_order(pid)}],
                },
            },
        ),
    ]
    if encounter is not None:
        calls.append(
            (
                "dxsafety-encounter-discharge",
                {"userId": "Practitioner/b", "patientId": pid, "encounterId": encounter},
            )
        )
    for service_id, context in calls:
        service = SERVICES[service_id]
        ctx = service.context_model.model_validate(context)
        a = fast.advise(service, ctx, resources, now)
        b = full.advise(service, ctx, resources, now)
        _same(a, b)
        compared += len(b.cards)
    return compared


def test_bench_prefetch_same_cards(ruleset: RuleSet) -> None:
    fast, full = _advisors(ruleset)
    assert fast.plan is not None and full.plan is None
    resources = _bench_patient(NOW)
    kept = fast.plan.relevant(resources)
    assert len(resources) == 500 and len(kept) < 60  # the heart rates are skipped
    assert any(r["id"] == f"{PID}-fit" for r in kept)  # the positive FIT is read
    cards = _advise_all(fast, full, resources, PID, NOW, encounter=f"{PID}-ed")
    assert cards >= 2  # the FIT follow-up (patient-view, order-sign) at least


def test_cds_patients_same_cards(ruleset: RuleSet) -> None:
    fast, full = _advisors(ruleset)
    cards = 0
    for days_ago in (30, 90, 200):
        resources = P.fit_patient("p", NOW, days_ago=days_ago) + P.padding("p", NOW, 40)
        cards += _advise_all(fast, full, resources, "p", NOW)
    dizzy = P.dizzy_patient("d", NOW) + P.padding("d", NOW, 40)
    cards += _advise_all(fast, full, dizzy, "d", NOW, encounter="d-ed")
    assert cards > 0


def test_synthea_same_findings(ruleset: RuleSet) -> None:
    """Lab-heavy real-looking records: every finding of every shown rule (not only the open
    follow-ups CDS shows) is the same on the reduced timeline."""
    fast, _ = _advisors(ruleset)
    assert fast.plan is not None
    paths = sorted(SYNTHEA.glob("*.json"))[:6]
    assert paths, f"no Synthea patients in {SYNTHEA}"
    skipped = 0
    found = 0
    for path in paths:
        bundle = json.loads(path.read_text())
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        kept = fast.plan.relevant(resources)
        skipped += len(resources) - len(kept)
        tl_full = timeline_from_resources(resources, validate="fast")
        tl_fast = timeline_from_resources(kept, validate="fast")
        last = max((e.t for e in tl_full.events), default=datetime(2020, 1, 1, tzinfo=UTC))
        for as_of in (last + timedelta(days=30), last - timedelta(days=365 * 3)):
            every = evaluate(fast.rules, tl_full, as_of=as_of)
            assert evaluate(fast.rules, tl_fast, as_of=as_of) == every, path.name
            found += len(every)
            lookback = timedelta(days=36500)
            assert open_findings(fast.rules, tl_fast, now=as_of, lookback=lookback) == (
                open_findings(fast.rules, tl_full, now=as_of, lookback=lookback)
            ), path.name
    assert skipped > 0  # not vacuous: observations were skipped
    assert found > 0  # and the rules did find something on these records


def test_malformed_observation_kept(ruleset: RuleSet) -> None:
    """Shapes the converter rejects are kept, so it still reports them."""
    fast, _ = _advisors(ruleset)
    assert fast.plan is not None
    vital = P.vital("p", "hr", NOW, 70)
    assert not fast.plan.keep(vital)
    for bad in (
        {"code": "8867-4"},
        {"code": {"coding": {"code": "8867-4"}}},
        {"code": {"coding": ["8867-4"]}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": 8867}]}},
        {"component": {"code": {}}},
    ):
        assert fast.plan.keep({**vital, **bad}), bad
    fit = P.fit_result("p", "fit", NOW)
    assert fast.plan.keep(fit)
    # a FIT code in a component is read too
    assert fast.plan.keep({**vital, "component": [{"code": fit["code"]}]})


def _rules_with(tmp_path: Path, event: str) -> RuleSet:
    """The SP-3 rule with its temperature condition replaced by ``event``."""
    src = REPO / "rules/core/spade/abdominal_pain_fever_admission_10d.yaml"
    shutil.copytree(REPO / "rules/valuesets", tmp_path / "valuesets")
    text = src.read_text()
    start = text.index("  require:")
    (tmp_path / "fastpath_test_rule.yaml").write_text(
        text[:start] + f"  require:\n    - event: {event}\n      between: [-24h, 0h]\n"
    )
    return load_rules(tmp_path)


def test_plan_off_when_a_selector_has_no_codes(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, '{kind: observation, value: ">= 38.0 Cel"}')
    assert len(rules.rules) == 1
    assert read_plan(rules.rules, rules.valuesets) is None


def test_plan_reads_codes_of_conditions(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, '{kind: [observation, report], codes: ["loinc:2160-0"]}')
    plan = read_plan(rules.rules, rules.valuesets)
    assert plan is not None
    creatinine = P.vital("p", "cr", NOW, 1.0)
    creatinine["code"] = {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}
    assert plan.keep(creatinine)
    assert not plan.keep(P.vital("p", "hr", NOW, 70))


def test_plan_reads_nested_conditions(ruleset: RuleSet) -> None:
    """SP-3's temperature is an ``any:`` inside ``require:`` (and SP-3 is a shown rule)."""
    fast, _ = _advisors(ruleset)
    assert fast.plan is not None
    temperature = P.vital("p", "temp", NOW, 38.5)
    temperature["code"] = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}
    assert fast.plan.keep(temperature)
