"""Coverage for ``dxsafety profile``: per field, what maps, and the top unmapped values with
an example reference."""

from __future__ import annotations

from plugin.fhir.parse import timeline_from_resources
from plugin.normalize.coverage import Coverage, ThresholdInput, field_coverage

SUBJECT = {"reference": "Patient/p1"}


def resources():
    return [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": SUBJECT,
         "class": {"code": "IMP"}, "period": {"start": "2025-01-01T00:00:00Z"}},
        {"resourceType": "Encounter", "id": "e2", "status": "finished", "subject": SUBJECT,
         "class": {"code": "LOCAL-9"}, "period": {"start": "2025-01-02T00:00:00Z"}},
        {"resourceType": "Encounter", "id": "e3", "status": "finished", "subject": SUBJECT,
         "class": {"code": "LOCAL-9"}, "period": {"start": "2025-01-03T00:00:00Z"}},
        {"resourceType": "Observation", "id": "o1", "status": "final", "subject": SUBJECT,
         "code": {"coding": [{"system": "http://loinc.org", "code": "3016-3"}]},
         "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": 3, "unit": "mIU/L"},
         "referenceRange": [{"high": {"value": 4.5}}]},
        {"resourceType": "Observation", "id": "o2", "status": "final", "subject": SUBJECT,
         "code": {"coding": [{"system": "urn:local:lab", "code": "TSH"}]},
         "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": 3, "unit": "furlongs"}},
    ]  # fmt: skip


def test_field_coverage_counts_and_examples():
    tl = timeline_from_resources(resources())
    by = {f.field: f for f in field_coverage([tl])}
    setting = by["encounter.setting"]
    assert (setting.total, setting.mapped) == (3, 1)
    assert setting.unmapped == (("LOCAL-9", 2, "Encounter/e2"),)
    assert setting.share == 1 / 3
    unit = by["observation.unit"]
    assert (unit.total, unit.mapped, unit.unmapped) == (2, 1, (("furlongs", 1, "Observation/o2"),))
    system = by["observation.code_system"]
    assert system.unmapped == (("local:urn:local:lab", 1, "Observation/o2"),)
    result = by["observation.result"]
    assert (result.total, result.mapped) == (2, 1)


def test_streaming_accumulates_over_timelines():
    cov = Coverage(top=1)
    tl = timeline_from_resources(resources())
    cov.add(tl)
    cov.add(tl)
    setting = next(f for f in cov.fields() if f.field == "encounter.setting")
    assert (setting.total, setting.mapped, setting.unmapped) == (
        6, 2, (("LOCAL-9", 4, "Encounter/e2"),))  # fmt: skip


def test_a_rule_threshold_reports_values_that_cannot_convert():
    tsh = ThresholdInput("TR-7 > 10 mIU/L", lambda e: e.code in ("3016-3", "TSH"), "mIU/L")
    cov = Coverage(thresholds=[tsh])
    cov.add(timeline_from_resources(resources()))
    (th,) = [f for f in cov.fields() if f.field.startswith("threshold:")]
    assert th.field == "threshold:TR-7 > 10 mIU/L"
    assert (th.total, th.mapped, th.unmapped) == (2, 1, (("furlongs", 1, "Observation/o2"),))
