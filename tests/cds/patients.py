"""FHIR R4 resources for the CDS tests and bench: small patients built around real rules.

* :func:`fit_patient`: a 60-year-old with a positive FIT ``days_ago`` days before ``now`` and
  no colonoscopy (rule "Positive FOBT/FIT without colonoscopy or GI visit within 60 days").
* :func:`dizzy_patient`: atrial fibrillation, then an ED visit for dizziness discharged home
  (the index pattern of "dizziness with stroke risk factors, then stroke within 30 days").
* :func:`padding`: extra unremarkable vital signs, to reach a realistic resource count.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

FIT_LOINC = "57905-2"
COLONOSCOPY_SNOMED = "73761001"


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def patient(pid: str, birth: str = "1966-05-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}


def encounter(
    pid: str,
    eid: str,
    start: datetime,
    hours: float,
    *,
    cls: str = "AMB",
    reason: tuple[str, str] | None = None,
    discharge: str | None = None,
) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": _iso(start), "end": _iso(start + timedelta(hours=hours))},
    }
    if reason is not None:
        enc["reasonCode"] = [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": reason[0],
                        "display": reason[1],
                    }
                ]
            }
        ]
    if discharge is not None:
        enc["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        "code": discharge,
                    }
                ]
            }
        }
    return enc


def condition(pid: str, cid: str, code: str, display: str, onset: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": _iso(onset),
        "recordedDate": _iso(onset),
    }


def fit_result(pid: str, oid: str, when: datetime, eid: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": FIT_LOINC,
                    "display": "Hemoglobin.gastrointestinal [Presence] in Stool by Immunoassay",
                }
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(when),
        "valueCodeableConcept": {"text": "Positive"},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "POS",
                    }
                ]
            }
        ],
    }
    if eid:
        obs["encounter"] = {"reference": f"Encounter/{eid}"}
    return obs


def vital(pid: str, oid: str, when: datetime, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(when),
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def padding(pid: str, now: datetime, count: int) -> list[dict[str, Any]]:
    """``count`` heart-rate observations spread over the two years before ``now``."""
    step = timedelta(days=730) / max(count, 1)
    return [vital(pid, f"{pid}-hr-{i}", now - step * (i + 1), 60 + i % 30) for i in range(count)]


def fit_patient(pid: str, now: datetime, *, days_ago: int = 90) -> list[dict[str, Any]]:
    when = now - timedelta(days=days_ago)
    return [
        patient(pid),
        encounter(pid, f"{pid}-enc-fit", when - timedelta(hours=1), 1),
        fit_result(pid, f"{pid}-fit", when, f"{pid}-enc-fit"),
    ]


def dizzy_patient(pid: str, now: datetime) -> list[dict[str, Any]]:
    """Atrial fibrillation two years ago; an ED visit for dizziness ending 2 hours ago."""
    ed_start = now - timedelta(hours=6)
    return [
        patient(pid, birth="1950-04-01", gender="male"),
        condition(pid, f"{pid}-af", "I48.91", "Atrial fibrillation", now - timedelta(days=730)),
        encounter(
            pid, f"{pid}-ed", ed_start, 4, cls="EMER", reason=("R42", "Dizziness"), discharge="home"
        ),
    ]


def colonoscopy_order(pid: str, rid: str = "draft-colonoscopy") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": COLONOSCOPY_SNOMED,
                    "display": "Colonoscopy",
                }
            ],
            "text": "Colonoscopy",
        },
        "subject": {"reference": f"Patient/{pid}"},
    }


TYPE_KEYS = {
    "Encounter": "encounters",
    "Condition": "conditions",
    "Observation": "observations",
    "Procedure": "procedures",
    "DiagnosticReport": "reports",
    "ServiceRequest": "orders",
    "MedicationRequest": "medications",
}


def full_prefetch(
    resources: list[dict[str, Any]], *, encounter_id: str | None = None
) -> dict[str, Any]:
    """Prefetch for every template of our services, as a conformant client would send it."""
    pat = next(r for r in resources if r["resourceType"] == "Patient")
    out: dict[str, Any] = {"patient": pat}
    for rtype, key in TYPE_KEYS.items():
        entries = [{"resource": r} for r in resources if r["resourceType"] == rtype]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
        }
        if entries:
            bundle["entry"] = entries
        out[key] = bundle
    if encounter_id is not None:
        out["encounter"] = next(
            (r for r in resources if r["resourceType"] == "Encounter" and r["id"] == encounter_id),
            None,
        )
    return out
