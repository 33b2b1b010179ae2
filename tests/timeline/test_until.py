"""Timeline.until: the timeline as known at a moment, with no diagnosis of a later Condition
leaking into an earlier encounter (the builder merges linked Conditions into the encounter)."""

from datetime import UTC, datetime, timedelta

from plugin.timeline.codes import parse_code
from plugin.timeline.model import Kind
from plugin.timeline.spec import EPOCH, timeline_from_spec

ED_END = EPOCH + timedelta(hours=4)


def ed_visit(*conditions):
    return timeline_from_spec(
        {
            "events": [
                {
                    "id": "ed",
                    "t": "0d",
                    "setting": "ED",
                    "end": "4h",
                    "disposition": "home",
                    "diagnosis": ["icd10:R42"],
                },
                *conditions,
            ]
        }
    )


def diagnoses(tl, source="Encounter/ed"):
    (enc,) = [e for e in tl.events if e.kind is Kind.ENCOUNTER and e.source == source]
    return set(enc.diagnoses)


def test_a_condition_dated_after_the_moment_does_not_leak_into_the_encounter():
    tl = ed_visit(
        {"id": "early", "t": "2h", "code": "icd10:R51", "encounter": "ed"},
        {"id": "late", "t": "7d", "code": "icd10:I63.9", "encounter": "ed"},
    )
    assert parse_code("icd10:I63.9") in diagnoses(tl)  # the full timeline links it
    known = tl.until(ED_END)
    assert diagnoses(known) == {parse_code("icd10:R42"), parse_code("icd10:R51")}
    assert diagnoses(tl.until(EPOCH + timedelta(days=8))) == diagnoses(tl)


def test_a_condition_recorded_after_the_moment_does_not_leak_either():
    tl = ed_visit({"id": "late", "t": "2h", "code": "icd10:I63.9", "encounter": "ed"})
    (cond,) = [e for e in tl.events if e.kind is Kind.CONDITION]
    recorded_late = cond.__class__(**{**_fields(cond), "recorded": EPOCH + timedelta(days=3)})
    events = tuple(recorded_late if e is cond else e for e in tl.events)
    tl = tl.__class__(patient=tl.patient, events=events)
    assert diagnoses(tl.until(ED_END)) == {parse_code("icd10:R42")}
    assert parse_code("icd10:I639") in diagnoses(tl.until(EPOCH + timedelta(days=3)))


def test_a_code_also_given_by_a_known_condition_is_kept():
    tl = ed_visit(
        {"id": "early", "t": "1h", "code": "icd10:I63.9", "encounter": "ed"},
        {"id": "late", "t": "7d", "code": "icd10:I63.9", "encounter": "ed"},
    )
    assert parse_code("icd10:I639") in diagnoses(tl.until(ED_END))


def test_until_is_leakage_free_for_any_moment():
    """Whatever is added after the moment, the timeline known at the moment is the same."""
    base = [{"id": "c1", "t": "3h", "code": "icd10:R51", "encounter": "ed"}]
    later = [
        {"id": "c2", "t": "2d", "code": "icd10:I63.9", "encounter": "ed"},
        {"id": "adm", "t": "3d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:I61.9"]},
        {"id": "c3", "t": "4d", "code": "icd10:G45.9", "encounter": "adm"},
    ]
    for hours in (0, 2, 4, 30):
        moment = EPOCH + timedelta(hours=hours)
        assert ed_visit(*base).until(moment) == ed_visit(*base, *later).until(moment)


def test_an_encounter_without_linked_conditions_is_untouched():
    tl = ed_visit()
    assert tl.until(datetime(2026, 1, 1, tzinfo=UTC)) == tl


def _fields(event):
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def test_a_later_condition_named_by_encounter_reason_reference_does_not_leak():
    """FHIR: the Encounter points to the Condition (reasonReference) and the Condition does
    not name the Encounter back; the Condition is recorded two days after discharge.
    (A Condition that Encounter.diagnosis lists is linked back by the converter already.)"""
    from plugin.fhir.parse import timeline_from_resources

    encounter = {
        "resourceType": "Encounter", "id": "ed", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": "Patient/p"},
        "period": {"start": "2025-01-01T00:00:00Z", "end": "2025-01-01T04:00:00Z"},
        "reasonReference": [{"reference": "Condition/late"}],
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                     "code": "R42"}]}],
    }  # fmt: skip
    condition = {
        "resourceType": "Condition", "id": "late", "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I63.9"}]},
        "recordedDate": "2025-01-03T10:00:00Z",
    }  # fmt: skip
    patient = {"resourceType": "Patient", "id": "p"}
    tl = timeline_from_resources([patient, encounter, condition])
    stroke = parse_code("icd10:I63.9")
    assert stroke in diagnoses(tl)
    assert diagnoses(tl.until(ED_END)) == {parse_code("icd10:R42")}
    assert stroke in diagnoses(tl.until(EPOCH + timedelta(days=3)))
