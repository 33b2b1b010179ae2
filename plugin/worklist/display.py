"""How the case page shows record data to a reviewer (issue 15, item 7): times in the
chart's local time with its UTC offset, evidence by what it is rather than its FHIR id, and
the report texts of the episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KIND_NAMES = {"encounter": "Visit", "condition": "Diagnosis", "observation": "Result",
              "report": "Report", "procedure": "Procedure", "order": "Order",
              "medication": "Medication", "death": "Death", "transfer": "Transfer"}  # fmt: skip
SETTING_NAMES = {"ED": "emergency department", "IP": "inpatient", "ICU": "intensive care",
                 "OBS": "observation", "AMB": "ambulatory"}  # fmt: skip


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_time(value: datetime | str | None, offset_min: int | None = None,
               tz: str = "UTC") -> str:  # fmt: skip
    """``2024-03-05 15:30 +01:00``: the record's own offset when it had one, else the site's
    zone (``worklist_timezone``)."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # (a template passes Jinja's Undefined for an event without an offset)
    known = isinstance(offset_min, int) and not isinstance(offset_min, bool)
    where = timezone(timedelta(minutes=offset_min)) if known else zone(tz)  # type: ignore[arg-type]
    shown = moment.astimezone(where)
    offset = shown.strftime("%z")
    return f"{shown:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def by_source(snapshot: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {ev["source"]: ev for ev in (snapshot or {}).get("events", [])}


def describe(ev: dict[str, Any]) -> str:
    """``Visit (emergency department): dizziness [R42]`` rather than ``Encounter/ed-p1``."""
    kind = KIND_NAMES.get(ev.get("kind", ""), ev.get("kind", "Event"))
    if ev.get("setting"):
        kind += f" ({SETTING_NAMES.get(ev['setting'], ev['setting'])})"
    what = ev.get("text") or ""
    code = str(ev.get("code") or "").split(":", 1)[-1]
    if ev.get("diagnoses"):
        dx = ", ".join(str(d).split(":", 1)[-1] for d in ev["diagnoses"][:4])
        what = f"{what} (diagnoses {dx})" if what else f"diagnoses {dx}"
    elif code and code not in what:
        what = f"{what} [{code}]".strip()
    if "value" in ev:
        what += f" = {ev['value']:g} {ev.get('unit', '')}".rstrip()
    return f"{kind}: {what}" if what else kind


def evidence_rows(finding: dict[str, Any], tz: str) -> list[dict[str, str]]:
    """The rule's evidence as the reviewer reads it (the FHIR id stays, small, for lookup)."""
    events = by_source(finding.get("snapshot"))
    refs = list(
        dict.fromkeys(
            [
                finding["index_ref"],
                *(finding.get("evidence") or []),
                *([finding["outcome_ref"]] if finding.get("outcome_ref") else []),
            ]
        )
    )
    rows = []
    for ref in refs:
        ev = events.get(ref)
        role = ("index event" if ref == finding["index_ref"] else "outcome"
                if ref == finding.get("outcome_ref") else "evidence")  # fmt: skip
        if ev is None:
            rows.append({"role": role, "what": ref, "when": "", "ref": ref})
        else:
            rows.append({"role": role, "what": describe(ev), "ref": ref,
                         "when": local_time(ev["t"], ev.get("offset_min"), tz)})  # fmt: skip
    return rows


def notes(finding: dict[str, Any], tz: str) -> list[dict[str, str]]:
    """Report texts in the snapshot, oldest first."""
    found = []
    for ev in (finding.get("snapshot") or {}).get("events", []):
        if ev.get("narrative"):
            found.append({"when": local_time(ev["t"], ev.get("offset_min"), tz),
                          "title": ev.get("text") or describe(ev), "text": ev["narrative"],
                          "source": ev["source"]})  # fmt: skip
    return found


def index_offset(finding: dict[str, Any]) -> int | None:
    ev = by_source(finding.get("snapshot")).get(finding["index_ref"])
    return ev.get("offset_min") if ev else None
