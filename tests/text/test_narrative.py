"""Reading a DiagnosticReport's narrative: conclusion, conclusionCode, presentedForm."""

from __future__ import annotations

import base64

from plugin.fhir.parse import timeline_from_resources
from plugin.text.narrative import narrative_parts, report_narrative
from plugin.timeline.model import Kind


def b64(text: str, enc: str = "utf-8") -> str:
    return base64.b64encode(text.encode(enc)).decode()


def report(**extra):
    return {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-04T10:00:00Z",
        **extra,
    }


def test_conclusion_codes_and_forms_are_joined_in_order():
    r = report(
        conclusion="Impression one.",
        conclusionCode=[{"coding": [{"display": "Solitary nodule"}]}, {"text": "Lung mass"}],
        presentedForm=[{"contentType": "text/plain", "data": b64("Plain form.")}],
    )
    assert report_narrative(r) == "Impression one.\n\nSolitary nodule\n\nLung mass\n\nPlain form."


def test_html_is_stripped_and_blocks_end_sentences():
    html = "<html><style>p{}</style><h2>IMPRESSION</h2><p>Lung-RADS&reg; 4B &ndash; x</p></html>"
    r = report(presentedForm=[{"contentType": "text/html; charset=utf-8", "data": b64(html)}])
    assert report_narrative(r) == "IMPRESSION\nLung-RADS® 4B – x"


def test_latin1_and_bom_are_decoded():
    r = report(
        presentedForm=[
            {"contentType": "text/plain; charset=iso-8859-1", "data": b64("Nodule é.", "latin-1")},
            {"contentType": "text/plain", "data": b64("\ufeffSecond.")},
        ]
    )
    assert report_narrative(r) == "Nodule é.\n\nSecond."


def test_unreadable_attachments_are_listed_not_fatal():
    r = report(
        presentedForm=[
            {"contentType": "application/pdf", "data": b64("%PDF")},
            {"contentType": "text/plain", "url": "http://example.org/r.txt"},
            {"contentType": "text/plain", "data": "!!!not base64"},
        ]
    )
    parts = narrative_parts(r)
    assert parts.text is None
    assert parts.unreadable[:2] == ("application/pdf", "url")
    assert len(parts.unreadable) == 3


def test_the_report_event_carries_the_narrative():
    r = report(conclusion="Spiculated lung mass.")
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
    tl = timeline_from_resources([patient, r], validate="fast")
    (event,) = [e for e in tl.events if e.kind is Kind.REPORT]
    assert event.narrative == "Spiculated lung mass."
