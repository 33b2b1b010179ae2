"""Exports of reviewed cases: CSV for analysts and FHIR R4 ``DetectedIssue`` NDJSON for the
hospital's systems. Training labels are :mod:`plugin.worklist.labels_export`."""

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
from plugin.worklist.csvsafe import safe_cell, safe_row
from plugin.worklist.saferdx import FACTOR_CODES, PROCESS_BREAKDOWN, final_judgement
from plugin.worklist.store import Store, utc

OUTCOME_SYSTEM = "urn:dxsafety:review-outcome"
RULE_SYSTEM = "urn:dxsafety:rule"
FINDING_SYSTEM = "urn:dxsafety:finding"
SEVERITY = {"death": "high", "severe": "high", "moderate": "moderate", "mild": "low",
            "none": "low"}  # fmt: skip
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
        """The review whose call stands: the last one agreeing with the (majority) verdict."""
        verdict = self.final_mod
        agreeing = [r for r in self.reviews if verdict is None or r["is_mod"] == verdict]
        return (agreeing or self.reviews)[-1]

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
    """One row per reviewed case. Every cell is formula-safe (:mod:`csvsafe`): notes, titles
    and diagnoses are free text that a spreadsheet would otherwise run as a formula."""
    writer = _SafeWriter(out, CSV_FIELDS)
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


class _SafeWriter(csv.DictWriter):  # type: ignore[type-arg]
    """A ``csv.DictWriter`` that writes every cell through :func:`csvsafe.safe_cell`."""

    def __init__(self, out: TextIO, fields: tuple[str, ...]) -> None:
        super().__init__(out, fieldnames=fields)

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow(safe_row(rowdict))


# --- one row per review: items 1-12, notes, time spent (issue 15; admins only) ------------
REVIEW_FIELDS = ("record_id", "case_key", "rule_id", "rules", "review_round", "reviewer",
                 *(f"item{i}" for i in range(1, 14)), "is_mod", "harm", "harm_duration",
                 "miscoded", "missed_dx", "notes",
                 *(f"factor_{code}" for code in FACTOR_CODES), "reviewed_at", "minutes_spent",
                 "case_status", "final_mod")  # fmt: skip

# REDCap data dictionary rows: (field, type, label, choices, validation)
_SCALE = " | ".join(f"{v}, {v}" for v in range(1, 8))
_YESNO = "0, No | 1, Yes"


def _dictionary() -> list[tuple[str, str, str, str, str]]:
    from plugin.worklist.saferdx import DURATIONS, HARM, ITEMS

    rows = [
        ("record_id", "text", "Review id", "", "integer"),
        ("case_key", "text", "Case key (dxsafety finding key)", "", ""),
        ("rule_id", "text", "Rule that opened the case", "", ""),
        ("rules", "notes", "All rules that fired in the episode (; separated)", "", ""),
        ("review_round", "text", "Review round (1 first, 2 second, 3 tie-break)", "", "integer"),
        ("reviewer", "text", "Reviewer (worklist user name)", "", ""),
    ]
    rows += [(f"item{i}", "radio", f"Revised Safer Dx item {i} (paraphrase): {text}", _SCALE, "")
             for i, text in enumerate(ITEMS, start=1)]  # fmt: skip
    rows += [
        ("is_mod", "yesno", "Missed opportunity in diagnosis (item 13 >= 5)", _YESNO, ""),
        ("harm", "radio", "AHRQ Common Formats Harm Scale v1.2",
         " | ".join(f"{code}, {label.split(':')[0]}" for code, label in HARM), ""),
        ("harm_duration", "radio", "Harm duration", " | ".join(f"{d}, {d}" for d in DURATIONS),
         ""),
        ("miscoded", "yesno", "The trigger fired on a coding error", _YESNO, ""),
        ("missed_dx", "text", "Missed or delayed diagnosis", "", ""),
        ("notes", "notes", "Reviewer notes", "", ""),
        *((f"factor_{code}", "yesno", f"Process breakdown: {label}", _YESNO, "")
          for code, label in PROCESS_BREAKDOWN),
        ("reviewed_at", "text", "When the review was saved (UTC)", "", "datetime_seconds_ymd"),
        ("minutes_spent", "text", "Minutes from the first autosave to the saved review", "",
         "number"),
        ("case_status", "text", "Case status at export", "", ""),
        ("final_mod", "yesno", "Case verdict (majority of reviews; blank while open)", _YESNO, ""),
    ]  # fmt: skip
    return rows


DICTIONARY_HEADER = ("Variable / Field Name", "Form Name", "Section Header", "Field Type",
                     "Field Label", "Choices, Calculations, OR Slider Labels", "Field Note",
                     "Text Validation Type OR Show Slider Number")  # fmt: skip


def write_review_dictionary(out: TextIO) -> int:
    """The REDCap data dictionary of :func:`write_reviews` (import it before the data)."""
    writer = csv.writer(out)
    writer.writerow(DICTIONARY_HEADER)
    rows = _dictionary()
    for field, kind, label, choices, validation in rows:
        writer.writerow([safe_cell(v) for v in (field, "safer_dx_review", "", kind, label,
                                                choices, "", validation)])  # fmt: skip
    return len(rows)


def write_reviews(store: Store, out: TextIO) -> int:
    """One row per review, REDCap-ready (see :func:`write_review_dictionary`): the 13 items,
    harm, notes and time spent. Contains reviewers' free text: admins only."""
    f = t.findings
    with store.engine.connect() as conn:
        episode: dict[int, list[str]] = {}
        for case_id, rule_id in conn.execute(
            sa.select(f.c.case_id, f.c.rule_id).where(f.c.case_id.is_not(None))
        ):
            episode.setdefault(case_id, []).append(rule_id)
    writer = _SafeWriter(out, REVIEW_FIELDS)
    writer.writeheader()
    n = 0
    for case in reviewed_cases(store):
        fd, verdict = case.finding, case.final_mod
        for r in case.reviews:
            created, started = utc(r["created_at"]), utc(r.get("started_at"))
            minutes = ((created - started).total_seconds() / 60 if created and started
                       else None)  # fmt: skip
            writer.writerow({
                "record_id": r["id"], "case_key": fd["key"], "rule_id": fd["rule_id"],
                "rules": ";".join([fd["rule_id"], *episode.get(fd["id"], [])]),
                "review_round": r["round"], "reviewer": r["reviewer"],
                **{f"item{i}": v for i, v in enumerate(r["items"], start=1)},
                "is_mod": int(r["is_mod"]), "harm": r["harm"],
                "harm_duration": r["harm_duration"] or "", "miscoded": int(r["miscoded"]),
                "missed_dx": r["missed_dx"], "notes": r["notes"],
                **{f"factor_{c}": int(c in (r.get("factors") or [])) for c in FACTOR_CODES},
                "reviewed_at": created.strftime("%Y-%m-%d %H:%M:%S") if created else "",
                "minutes_spent": round(minutes, 1) if minutes is not None else "",
                "case_status": fd["status"],
                "final_mod": "" if verdict is None else int(verdict),
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
