"""The principal diagnosis of an Encounter (plugin.fhir.encounter.principal_codes): rank 1
(billing, then DD, among several rank-1 entries), else use billing, else DD, else unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from plugin.fhir.parse import timeline_from_resources
from plugin.timeline.model import Code, Kind

FIXTURES = Path(__file__).parents[2] / "fhir_fixtures"
ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
CODES = {"stroke": "I63.9", "pneumonia": "J18.9", "injury": "S72.001A", "sepsis": "A41.9"}


def condition(name: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": name,
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": CODES[name]}]},
    }


def entry(name: str, *, rank: Any = None, use: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"condition": {"reference": f"Condition/{name}"}}
    if rank is not None:
        out["rank"] = rank
    if use is not None:
        out["use"] = {"coding": [{"system": ROLE, "code": use}]}
    return out


def principal_of(*entries: dict[str, Any], reason: str | None = None) -> tuple[str, ...]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": {"reference": "Patient/p"},
        "period": {"start": "2025-03-01T10:00:00Z", "end": "2025-03-04T10:00:00Z"},
        "diagnosis": list(entries),
    }
    if reason:
        enc["reasonCode"] = [{"coding": [{"system": "http://snomed.info/sct", "code": reason}]}]
    resources = [{"resourceType": "Patient", "id": "p"}, enc, *map(condition, CODES)]
    tl = timeline_from_resources(resources)
    (ev,) = [e for e in tl.events if e.kind is Kind.ENCOUNTER]
    assert ev.detail is not None
    assert set(ev.detail.principal) <= set(ev.detail.diagnoses)  # a principal is a diagnosis
    return tuple(c.code for c in ev.detail.principal)


@pytest.mark.parametrize(
    ("entries", "want"),
    [
        ([entry("pneumonia", rank=2), entry("stroke", rank=1)], ("I639",)),
        # rank counts within a role: among rank-1 entries billing wins, then DD
        ([entry("stroke", rank=1, use="AD"), entry("pneumonia", rank=1, use="billing")], ("J189",)),
        ([entry("stroke", rank=1, use="CC"), entry("sepsis", rank=1, use="DD")], ("A419",)),
        ([entry("stroke", rank=1, use="AD"), entry("sepsis", rank=1, use="CM")], ("I639",)),
        # no rank 1: billing, then DD
        ([entry("stroke", use="AD"), entry("pneumonia", use="billing")], ("J189",)),
        ([entry("stroke", use="AD"), entry("sepsis", use="DD"), entry("injury", use="CM")],
         ("A419",)),
        ([entry("stroke", rank=2, use="DD"), entry("pneumonia", rank=3, use="billing")],
         ("J189",)),
        # unknown: no rank 1 and no billing/DD role
        ([entry("stroke", use="AD"), entry("pneumonia", use="CC")], ()),
        ([entry("stroke"), entry("pneumonia")], ()),
        ([entry("stroke", rank=True)], ()),  # a JSON boolean is not rank 1
        ([entry("missing", rank=1)], ()),  # unresolvable Condition
        ([], ()),
    ],
)  # fmt: skip
def test_principal_choice(entries, want):
    assert principal_of(*entries) == want


def test_reason_code_is_never_principal():
    assert principal_of(reason="230690007") == ()


def test_principal_fixture_billing_beats_admission_role():
    resources = []
    for f in sorted((FIXTURES / "sp1_stroke_secondary_dx").glob("*.ndjson")):
        resources += [orjson.loads(line) for line in f.read_bytes().splitlines() if line]
    tl = timeline_from_resources(resources)
    ip = next(e for e in tl.events if e.source == "Encounter/sp1-p6-ip")
    assert ip.detail is not None
    assert ip.detail.principal == (Code("icd10", "J189"),)
    assert Code("icd10", "I639") in ip.detail.diagnoses
