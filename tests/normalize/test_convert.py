"""FHIR resources → timeline events with result semantics, setting provenance and the
chart's local offset (the converters reading the tables)."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin.fhir.parse import timeline_from_resources
from plugin.timeline.model import Finding, Kind, Setting, local_index_time, with_local_times

PATIENT = {"resourceType": "Patient", "id": "p1"}
SUBJECT = {"reference": "Patient/p1"}


def obs(oid, **value):
    return {
        "resourceType": "Observation", "id": oid, "status": "final", "subject": SUBJECT,
        "code": {"coding": [{"system": "http://loinc.org", "code": "3016-3"}]},
        "effectiveDateTime": "2025-03-05T10:00:00-04:00", **value,
    }  # fmt: skip


def events(*resources, warnings=None):
    tl = timeline_from_resources([PATIENT, *resources], warnings=warnings)
    return {e.source.split("/")[1]: e for e in tl.events if e.kind is not Kind.DEATH}


def test_observation_semantics_from_each_source():
    got = events(
        obs("cmp", valueQuantity={"value": 25, "comparator": "<", "unit": "ng/mL",
                                  "system": "http://unitsofmeasure.org", "code": "ng/mL"},
            referenceRange=[{"high": {"value": 20}}]),
        obs("str", valueString="15.2 mIU/L", referenceRange=[{"high": {"value": 4.5}}]),
        obs("la", valueCodeableConcept={"coding": [{"system": "http://loinc.org",
                                                    "code": "LA6576-8"}]}),
        obs("snomed", valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct",
                                                        "code": "260415000"}]}),
        obs("text", valueString="POSITIVE"),
        obs("rr", valueQuantity={"value": 2.9, "unit": "mmol/L"},
            referenceRange=[{"low": {"value": 3.5}, "high": {"value": 5.1}}]),
        obs("interp", valueQuantity={"value": 4}, interpretation=[{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
             "code": "H"}]}], referenceRange=[{"high": {"value": 5}}]),
    )  # fmt: skip
    cmp = got["cmp"]
    assert (cmp.value, cmp.comparator, cmp.abnormal) == (25, "<", None)
    s = got["str"]
    assert (s.value, s.unit, s.abnormal, s.abnormal_from) == (
        15.2, "mIU/L", "high", "reference_range")  # fmt: skip
    assert (got["la"].positive, got["la"].positive_from, got["la"].interpretation) == (
        True, "coded", ("POS",))  # fmt: skip
    assert (got["snomed"].positive, got["snomed"].interpretation) == (False, ("NEG",))
    assert (got["text"].positive, got["text"].positive_from) == (True, "string")
    assert (got["rr"].abnormal, got["rr"].abnormal_from) == ("low", "reference_range")
    assert (got["interp"].abnormal, got["interp"].abnormal_from) == ("high", "interpretation")


def test_unreadable_unit_is_kept_and_warned():
    warnings = []
    got = events(obs("u", valueQuantity={"value": 3, "unit": "furlongs/fortnight"}),
                 warnings=warnings)  # fmt: skip
    assert got["u"].unit == "furlongs/fortnight"
    assert any("unit not readable as UCUM" in w.what for w in warnings)


def enc(eid, cls=None, **more):
    r = {"resourceType": "Encounter", "id": eid, "status": "finished", "subject": SUBJECT,
         "period": {"start": "2025-03-05T22:30:00-05:00", "end": "2025-03-06T10:00:00-05:00"},
         **more}  # fmt: skip
    if cls is not None:
        r["class"] = cls
    return r


def test_setting_chain_from_fhir_with_provenance_and_unknown_warned():
    warnings = []
    got = events(
        enc("code", {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}),
        enc("display", {"display": "Inpatient"}),
        enc("type", {"code": "LOCAL-42"}, type=[{"coding": [
            {"system": "http://snomed.info/sct", "code": "50849002"}]}]),
        enc("none", {"code": "LOCAL-42"}),
        warnings=warnings,
    )  # fmt: skip
    d = {k: (v.detail.setting, v.detail.setting_from) for k, v in got.items() if v.detail}
    assert d == {
        "code": (Setting.ED, "class.code"),
        "display": (Setting.IP, "class.display"),
        "type": (Setting.ED, "type.snomed"),
        "none": (Setting.OTHER, "unknown"),
    }
    unknown = [w for w in warnings if "encounter setting unknown" in w.what]
    assert [w.where for w in unknown] == ["Encounter/none"]


def test_local_offset_is_kept_and_findings_show_it():
    tl = timeline_from_resources([PATIENT, enc("e1", {"code": "EMER"})])
    e = next(e for e in tl.events if e.kind is Kind.ENCOUNTER)
    assert e.offset_min == -300
    assert e.t == datetime(2025, 3, 6, 3, 30, tzinfo=UTC)  # the next day in UTC...
    assert e.local_t.isoformat() == "2025-03-05T22:30:00-05:00"  # ...the chart's day locally
    f = Finding(
        key="k", patient_id="p1", rule_id="r", rule_title="t", level="low",
        index_ref="Encounter/e1", index_start=e.t, index_end=None, window_end=e.t,
    )  # fmt: skip
    assert local_index_time(f, tl).isoformat() == "2025-03-05T22:30:00-05:00"
    (out,) = with_local_times([f], tl)
    assert out.extra["index_local"] == "2025-03-05T22:30:00-05:00"


def test_date_only_and_utc_values():
    got = events(
        obs("d", effectiveDateTime="2025-03-05", valueQuantity={"value": 1}),
        obs("z", effectiveDateTime="2025-03-05T10:00:00Z", valueQuantity={"value": 1}),
    )
    assert got["d"].offset_min is None
    assert got["z"].offset_min == 0


def test_class_written_as_a_codeable_concept():
    got = events(
        enc("cc", {"coding": [{"code": "IMP"}]}),
        enc("ccdisplay", {"coding": [{"system": "urn:x", "code": "L1", "display": "Emergency"}]}),
        enc("cctext", {"text": "Observation encounter"}),
    )
    d = {k: (v.detail.setting, v.detail.setting_from) for k, v in got.items() if v.detail}
    assert d == {
        "cc": (Setting.IP, "class.code"),
        "ccdisplay": (Setting.ED, "class.display"),
        "cctext": (Setting.OBS, "class.display"),
    }
