"""Findings and small timelines built by hand, so the worklist tests need no scan."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from plugin.timeline.model import (
    Code,
    EncounterDetail,
    Event,
    Finding,
    Kind,
    PatientInfo,
    Setting,
    Timeline,
)

T0 = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


def key_for(patient: str, rule: str, index_ref: str) -> str:
    return hashlib.sha1(f"{patient}|{rule}|{index_ref}".encode()).hexdigest()[:24]


def timeline(patient: str, start: datetime = T0) -> Timeline:
    """ED visit for dizziness, a normal and an abnormal lab, then a stroke admission."""
    ed = Event(
        patient=patient,
        t=start,
        end=start + timedelta(hours=4),
        kind=Kind.ENCOUNTER,
        system="",
        code="",
        source=f"Encounter/ed-{patient}",
        detail=EncounterDetail(
            setting=Setting.ED, class_code="EMER", diagnoses=(Code("icd10", "R42"),), released=True
        ),
    )
    glucose = Event(
        patient=patient,
        t=start + timedelta(hours=1),
        kind=Kind.OBSERVATION,
        system="loinc",
        code="2345-7",
        source=f"Observation/glu-{patient}",
        value=110.0,
        unit="mg/dL",
        ref_low=70,
        ref_high=99,
        text="Glucose",
    )
    sodium = Event(
        patient=patient,
        t=start + timedelta(hours=1),
        kind=Kind.OBSERVATION,
        system="loinc",
        code="2951-2",
        source=f"Observation/na-{patient}",
        value=140.0,
        unit="mmol/L",
        ref_low=135,
        ref_high=145,
        text="Sodium",
    )
    ct = Event(
        patient=patient,
        t=start + timedelta(hours=2),
        kind=Kind.REPORT,
        system="loinc",
        code="30799-1",
        source=f"DiagnosticReport/ct-{patient}",
        text="CT head without contrast",
    )
    meclizine = Event(
        patient=patient,
        t=start + timedelta(hours=3),
        kind=Kind.MEDICATION,
        system="rxnorm",
        code="6711",
        source=f"MedicationRequest/m-{patient}",
        text="meclizine",
    )
    admit = Event(
        patient=patient,
        t=start + timedelta(days=6),
        end=start + timedelta(days=11),
        kind=Kind.ENCOUNTER,
        system="",
        code="",
        source=f"Encounter/ip-{patient}",
        detail=EncounterDetail(
            setting=Setting.IP, class_code="IMP", diagnoses=(Code("icd10", "I639"),)
        ),
    )
    stroke = Event(
        patient=patient,
        t=start + timedelta(days=6),
        kind=Kind.CONDITION,
        system="icd10",
        code="I639",
        source=f"Condition/stroke-{patient}",
        text="Cerebral infarction",
        encounter=f"Encounter/ip-{patient}",
    )
    events = tuple(
        sorted(
            (ed, glucose, sodium, ct, meclizine, admit, stroke),
            key=lambda e: (e.t, e.kind, e.source),
        )
    )
    return Timeline(patient=PatientInfo(id=patient, sex="female"), events=events)


def finding(
    patient: str,
    *,
    rule: str = "rule-sp1",
    title: str = "ED dizziness then stroke admission",
    level: str = "high",
    score: float | None = None,
    start: datetime = T0,
) -> Finding:
    index_ref = f"Encounter/ed-{patient}"
    return Finding(
        key=key_for(patient, rule, index_ref),
        patient_id=patient,
        rule_id=rule,
        rule_title=title,
        level=level,
        index_ref=index_ref,
        index_start=start,
        index_end=start + timedelta(hours=4),
        window_end=start + timedelta(days=30),
        outcome_ref=f"Encounter/ip-{patient}",
        evidence=(index_ref, f"Encounter/ip-{patient}"),
        summary=f"ED dizziness {start:%Y-%m-%d} -> stroke admission +6 d",
        score=score,
        missed_dx=(("stroke", 0.61), ("TIA", 0.2)) if score is not None else (),
        reasons=("dizziness with vascular risk factors",) if score is not None else (),
        extra={"trigger": "SP-1"},
    )
