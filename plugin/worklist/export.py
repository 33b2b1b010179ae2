"""Exports of reviewed cases: CSV for analysts, FHIR R4 ``DetectedIssue`` NDJSON for the
hospital's systems, and labels in the CSV format ``dxsafety train`` reads
(``patient_id,index_ref,index_time,trigger,scenario,is_mod,missed_dx``)."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import sqlalchemy as sa

from plugin.worklist import tables as t
from plugin.worklist.saferdx import final_judgement
from plugin.worklist.store import Store, utc

OUTCOME_SYSTEM = "urn:dxsafety:review-outcome"
RULE_SYSTEM = "urn:dxsafety:rule"
FINDING_SYSTEM = "urn:dxsafety:finding"
SEVERITY = {"death": "high", "severe": "high", "moderate": "moderate", "mild": "low",
            "none": "low"}  # fmt: skip
LABEL_FIELDS = ("patient_id", "index_ref", "index_time", "trigger", "scenario", "is_mod",
                "missed_dx")  # fmt: skip
CSV_FIELDS = ("case_key", "rule_id", "rule_title", "patient_id", "index_ref", "index_time",
              "status", "final_mod", "n_reviews", "judgements", "reviewers", "harm",
              "harm_duration", "miscoded", "missed_dx", "score", "closed_at")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reviewed:
    finding: dict[str, Any]
    reviews: list[dict[str, Any]]

    @property
    def final_mod(self) -> bool | None:
        return final_judgement([r["is_mod"] for r in self.reviews], self.finding["status"])

    @property
    def deciding(self) -> dict[str, Any]:
        """The review whose call stands (the last one)."""
        return self.reviews[-1]

    @property
    def missed_dx(self) -> str:
        verdict = self.final_mod
        for review in reversed(self.reviews):
            if review["missed_dx"] and (verdict is None or review["is_mod"] == verdict):
                return str(review["missed_dx"])
        return ""


def reviewed_cases(store: Store, *, closed_only: bool = False) -> Iterator[Reviewed]:
    f, r, u = t.findings, t.reviews, t.users
    with store.engine.connect() as conn:
        reviews = conn.execute(
            sa.select(r, u.c.username.label("reviewer"))
            .join(u, u.c.id == r.c.reviewer_id)
            .order_by(r.c.id)
        ).all()
        by_case: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for rev in reviews:
            by_case[rev.finding_id].append(dict(rev._mapping))
        query = sa.select(f).where(f.c.id.in_(list(by_case))).order_by(f.c.id)
        if closed_only:
            query = query.where(f.c.status == "closed")
        for row in conn.execute(query):
            finding = dict(row._mapping)
            finding["index_start"] = utc(finding["index_start"])
            yield Reviewed(finding, by_case[finding["id"]])


def write_csv(store: Store, out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    n = 0
    for case in reviewed_cases(store):
        f, last = case.finding, case.deciding
        closed = utc(last["created_at"]) if f["status"] == "closed" else None
        verdict = case.final_mod
        writer.writerow({
            "case_key": f["key"], "rule_id": f["rule_id"], "rule_title": f["rule_title"],
            "patient_id": f["patient_id"], "index_ref": f["index_ref"],
            "index_time": f["index_start"].isoformat(), "status": f["status"],
            "final_mod": "" if verdict is None else int(verdict),
            "n_reviews": len(case.reviews),
            "judgements": " ".join(str(r["judgement"]) for r in case.reviews),
            "reviewers": " ".join(r["reviewer"] for r in case.reviews),
            "harm": last["harm"], "harm_duration": last["harm_duration"] or "",
            "miscoded": int(any(r["miscoded"] for r in case.reviews)),
            "missed_dx": case.missed_dx,
            "score": "" if f["score"] is None else f"{f['score']:.4f}",
            "closed_at": closed.isoformat() if closed else "",
        })  # fmt: skip
        n += 1
    return n


def _fhir_id(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", key)[:64]


def detected_issue(case: Reviewed) -> dict[str, Any]:
    """One FHIR R4 DetectedIssue for a reviewed case."""
    f, last = case.finding, case.deciding
    verdict = case.final_mod
    if verdict is None:
        code, display = "pending", "Review in progress"
    elif verdict:
        code, display = "missed-opportunity", "Missed opportunity in diagnosis (Safer Dx)"
    else:
        code, display = "no-missed-opportunity", "No missed opportunity in diagnosis"
    implicated = [f["index_ref"], *([f["outcome_ref"]] if f["outcome_ref"] else []),
                  *f["evidence"]]  # fmt: skip
    detail = f"{f['rule_title']}: {f['summary']}".strip(": ")
    if case.missed_dx:
        detail += f" Missed diagnosis: {case.missed_dx}."
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": _fhir_id(f["key"]),
        "identifier": [{"system": FINDING_SYSTEM, "value": f["key"]}],
        "status": "final" if verdict is not None else "preliminary",
        "code": {
            "coding": [{"system": OUTCOME_SYSTEM, "code": code, "display": display}],
            "text": display,
        },
        "patient": {"reference": f"Patient/{f['patient_id']}"},
        "identifiedDateTime": utc(last["created_at"]).isoformat(),  # type: ignore[union-attr]
        "implicated": [{"reference": ref} for ref in dict.fromkeys(implicated)],
        "evidence": [{
            "code": [{"coding": [{"system": RULE_SYSTEM, "code": f["rule_id"],
                                  "display": f["rule_title"]}]}],
            "detail": [{"reference": ref} for ref in dict.fromkeys(implicated)],
        }],
        "detail": detail,
    }  # fmt: skip
    if last["harm"] in SEVERITY and verdict:
        resource["severity"] = SEVERITY[last["harm"]]
    return resource


def write_detectedissues(store: Store, out: Path) -> int:
    n = 0
    with out.open("wb") as fh:
        for case in reviewed_cases(store):
            fh.write(orjson.dumps(detected_issue(case)) + b"\n")
            n += 1
    return n


def write_labels(store: Store, out: TextIO, triggers: Mapping[str, str] | None = None) -> int:
    """Closed cases as training labels; ``triggers`` maps rule id to catalogue id (SP-1)."""
    writer = csv.DictWriter(out, fieldnames=LABEL_FIELDS)
    writer.writeheader()
    n = 0
    for case in reviewed_cases(store, closed_only=True):
        f = case.finding
        trigger = (triggers or {}).get(f["rule_id"]) or f["extra"].get("trigger") or f["rule_id"]
        writer.writerow({
            "patient_id": f["patient_id"], "index_ref": f["index_ref"],
            "index_time": f["index_start"].isoformat(), "trigger": trigger,
            "scenario": f["extra"].get("scenario") or "reviewed",
            "is_mod": int(bool(case.final_mod)), "missed_dx": case.missed_dx,
        })  # fmt: skip
        n += 1
    return n
