"""A compact JSON snapshot of a patient's timeline around a finding's index event.

Stored with the finding so the case view can draw the chart without the source FHIR data.
Only what a reviewer needs: no names, no birth date (age at the index event instead).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from plugin.timeline.model import Event, Finding, Kind, Timeline

LOOK_BACK = timedelta(days=90)
LOOK_AHEAD = timedelta(days=14)
MAX_EVENTS = 600
NARRATIVE_CHARS = 20_000  # per report; longer texts are cut (the EHR link has the rest)
ABNORMAL_FLAGS = frozenset({"H", "HH", "HU", "L", "LL", "LU", "A", "AA", "POS", ">", "<"})


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def is_abnormal(event: Event) -> bool:
    """Abnormal by interpretation flag, or by value outside the reference range."""
    if any(flag in ABNORMAL_FLAGS for flag in event.interpretation):
        return True
    if event.value is None:
        return False
    low, high = event.ref_low, event.ref_high
    return (low is not None and event.value < low) or (high is not None and event.value > high)


def event_json(event: Event) -> dict[str, Any]:
    row: dict[str, Any] = {
        "t": _iso(event.t),
        "kind": str(event.kind),
        "code": f"{event.system}:{event.code}" if event.code else "",
        "text": event.text or "",
        "source": event.source,
    }
    if event.end is not None:
        row["end"] = _iso(event.end)
    if event.value is not None:
        row["value"] = event.value
        row["unit"] = event.unit or ""
    if event.interpretation:
        row["flags"] = list(event.interpretation)
    if event.kind is Kind.OBSERVATION:
        row["abnormal"] = is_abnormal(event)
    if event.status:
        row["status"] = event.status
    if event.offset_min is not None:  # the chart's own UTC offset: times shown in local time
        row["offset_min"] = event.offset_min
    if event.narrative:  # report text: the reviewer's main source (issue 15)
        row["narrative"] = event.narrative[:NARRATIVE_CHARS]
    if event.detail is not None:
        row["setting"] = str(event.detail.setting)
        row["diagnoses"] = [str(c) for c in event.detail.diagnoses]
        if event.detail.disposition:
            row["disposition"] = event.detail.disposition
        if event.detail.locations:
            row["icu"] = any(stay.icu for stay in event.detail.locations)
    return row


def snapshot(finding: Finding, timeline: Timeline) -> dict[str, Any]:
    """Events from ``LOOK_BACK`` before the index event to ``LOOK_AHEAD`` after the window."""
    start = finding.index_start - LOOK_BACK
    stop = max(finding.window_end, finding.index_end or finding.index_start) + LOOK_AHEAD
    evidence = set(finding.evidence) | {finding.index_ref}
    if finding.outcome_ref:
        evidence.add(finding.outcome_ref)
    chosen = [e for e in timeline.events if start <= e.t <= stop or e.source in evidence]
    if len(chosen) > MAX_EVENTS:  # keep evidence, then the events nearest the index event
        key_events = [e for e in chosen if e.source in evidence]
        others = sorted(
            (e for e in chosen if e.source not in evidence),
            key=lambda e: abs((e.t - finding.index_start).total_seconds()),
        )
        chosen = sorted(
            key_events + others[: max(0, MAX_EVENTS - len(key_events))], key=lambda e: e.t
        )
    info = timeline.patient
    return {
        "from": _iso(start),
        "to": _iso(stop),
        "sex": info.sex,
        "age": info.age_at(finding.index_start),
        "deceased": _iso(info.deceased),
        "truncated": len(chosen) < sum(1 for e in timeline.events if start <= e.t <= stop),
        "events": [event_json(e) for e in chosen],
    }
