"""Read findings written by ``dxsafety scan --format json`` (a list of Finding dicts)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from plugin.errors import StoreError
from plugin.fhir.read import ReadReport
from plugin.fhir.stage import Sources, iter_timelines
from plugin.fhir.validate import Mode
from plugin.timeline.model import Finding, Timeline


def _time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise StoreError(f"{field}: not an ISO date-time: {value!r}") from exc


def _missed(value: Any) -> tuple[tuple[str, float], ...]:
    out = []
    for item in value or ():
        if isinstance(item, dict):
            out.append((str(item.get("diagnosis") or item.get("dx")), float(item["probability"])))
        else:
            out.append((str(item[0]), float(item[1])))
    return tuple(out)


def finding_from_json(data: dict[str, Any]) -> Finding:
    """One finding from its JSON form (the inverse of ``dataclasses.asdict`` + isoformat)."""
    try:
        start = _time(data["index_start"], "index_start")
        window_end = _time(data["window_end"], "window_end")
        if start is None or window_end is None:
            raise StoreError("index_start and window_end are required")
        return Finding(
            key=str(data["key"]),
            patient_id=str(data["patient_id"]),
            rule_id=str(data["rule_id"]),
            rule_title=str(data.get("rule_title") or data["rule_id"]),
            level=str(data.get("level") or "medium"),
            index_ref=str(data["index_ref"]),
            index_start=start,
            index_end=_time(data.get("index_end"), "index_end"),
            window_end=window_end,
            outcome_ref=data.get("outcome_ref"),
            evidence=tuple(str(e) for e in data.get("evidence") or ()),
            summary=str(data.get("summary") or ""),
            score=None if data.get("score") is None else float(data["score"]),
            missed_dx=_missed(data.get("missed_dx")),
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
            extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"not a finding: {exc.__class__.__name__}: {exc}") from exc


def read_findings(path: Path) -> Iterator[Finding]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StoreError(f"{path}: cannot read findings JSON: {exc}") from exc
    if isinstance(data, dict):  # tolerate {"findings": [...]}
        data = data.get("findings", [])
    if not isinstance(data, list):
        raise StoreError(f"{path}: expected a JSON list of findings")
    for i, item in enumerate(data):
        try:
            yield finding_from_json(item)
        except StoreError as exc:
            raise StoreError(f"{path}: finding #{i + 1}: {exc}") from exc


def with_timelines(
    findings: list[Finding],
    fhir_paths: Sources,
    *,
    report: ReadReport,
    validate: Mode = "fast",
    batch: int = 500,
) -> Iterator[tuple[list[Finding], dict[str, Timeline]]]:
    """Pair findings with their patients' timelines read from FHIR files, in batches.

    Streams the population one patient at a time through the one pipeline
    (:func:`plugin.fhir.stage.iter_timelines`; ``report`` receives what was read and skipped);
    findings whose patient is not in the files come last, without a timeline.
    """
    by_patient: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_patient[f.patient_id].append(f)
    chunk: list[Finding] = []
    timelines: dict[str, Timeline] = {}
    for timeline in iter_timelines(fhir_paths, validate=validate, report=report):
        pid = timeline.patient.id
        mine = by_patient.pop(pid, None)
        if not mine:
            continue
        timelines[pid] = timeline
        chunk.extend(mine)
        if len(chunk) >= batch:
            yield chunk, timelines
            chunk, timelines = [], {}
    if chunk:
        yield chunk, timelines
    rest = [f for group in by_patient.values() for f in group]
    if rest:
        yield rest, {}
