"""Training and evaluation rows: findings with labels, encounters with 30-day outcomes.

:func:`collect_population` reads a population through the one pipeline
(:func:`plugin.fhir.stage.iter_timelines`) and keeps its read report on the result, so the
commands print what was skipped. ``collect`` walks timelines once: it runs the rules, computes
review features for each finding and joins its label (:mod:`plugin.rank.labels`), and computes
real-time features for each ED/clinic encounter (from ``Timeline.until`` its end, as
:func:`plugin.rank.features.realtime_features` does) with the diagnosis that followed it. The
split is **by patient**: a deterministic hash of the patient id, never of the row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plugin.fhir.read import ReadReport
from plugin.fhir.stage import Sources, iter_timelines
from plugin.fhir.validate import Mode
from plugin.rank.features import (
    REALTIME_FEATURES,
    REVIEW_FEATURES,
    encounter_features,
    find_event,
    finding_features,
    vector,
)
from plugin.rank.labels import (
    LabelRow,
    LabelSet,
    diagnosis_times,
    label_for,
    realtime_candidates,
    realtime_label,
)
from plugin.timeline.model import Finding, Timeline

LEVELS = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
VALIDATION_PERCENT = 20


def in_validation(patient_id: str, percent: int = VALIDATION_PERCENT) -> bool:
    """Deterministic patient-level split (sha256 of the id; independent of row order)."""
    h = hashlib.sha256(f"dxsafety-split|{patient_id}".encode()).digest()
    return int.from_bytes(h[:4], "big") % 100 < percent


@dataclass(slots=True)
class Rows:
    """Feature rows plus what describes them (labels, groups for metrics)."""

    names: tuple[str, ...]
    X: list[list[float]] = field(default_factory=list)
    y: list[str | int] = field(default_factory=list)
    patient: list[str] = field(default_factory=list)
    missed_dx: list[str] = field(default_factory=list)
    level: list[int] = field(default_factory=list)
    trigger: list[str] = field(default_factory=list)
    scenario: list[str] = field(default_factory=list)
    matched: list[bool] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)  # design weight (1 for synthetic truth)

    def matrix(self, mask: Sequence[bool] | None = None) -> np.ndarray:
        X = np.array(self.X, dtype=np.float64).reshape(len(self.X), len(self.names))
        return X if mask is None else X[np.asarray(mask, dtype=bool)]

    def column(self, name: str) -> np.ndarray:
        return self.matrix()[:, self.names.index(name)]

    def __len__(self) -> int:
        return len(self.X)


@dataclass(slots=True)
class Collected:
    review: Rows
    realtime: Rows
    patients: int = 0
    findings_unlabelled: int = 0
    reviewed: bool = False  # labels are reviewed cases: unlabelled findings were left out
    report: ReadReport = field(default_factory=ReadReport)  # set by collect_population


Evaluator = Callable[[Timeline], list[Finding]]


def collect(
    timelines: Iterable[Timeline],
    evaluate: Evaluator,
    labels: dict[tuple[str, str], list[LabelRow]],
    *,
    rule_triggers: dict[str, str] | None = None,
    rule_levels: dict[str, str] | None = None,
    realtime: bool = True,
) -> Collected:
    triggers = rule_triggers or {}
    reviewed = bool(getattr(labels, "reviewed", False))
    keys = labels.by_key() if isinstance(labels, LabelSet) else None
    out = Collected(
        review=Rows(REVIEW_FEATURES), realtime=Rows(REALTIME_FEATURES), reviewed=reviewed
    )
    for tl in timelines:
        out.patients += 1
        pid = tl.patient.id
        for f in evaluate(tl):
            trig = f.extra.get("trigger") or triggers.get(f.rule_id) or ""
            lab = label_for(f, trig, labels, keys)
            if reviewed and not lab.matched:
                # nobody reviewed it: unlabelled, never a negative
                out.findings_unlabelled += 1
                continue
            r = out.review
            r.X.append(vector(finding_features(tl, f, trig), REVIEW_FEATURES))
            r.y.append(int(lab.is_mod))
            r.patient.append(pid)
            r.missed_dx.append(lab.missed_dx)
            level = (rule_levels or {}).get(f.rule_id, f.level)
            r.level.append(LEVELS.get(str(level).lower(), 0))
            r.trigger.append(trig)
            r.scenario.append(lab.scenario)
            r.matched.append(lab.matched)
            r.keys.append(f.key)
            r.weight.append(lab.weight)
            out.findings_unlabelled += not lab.matched
        if realtime:
            times = diagnosis_times(tl)
            for enc in realtime_candidates(tl):
                known = tl.until(enc.stop)  # the visit as known then, as realtime_features
                row = encounter_features(known, find_event(known, enc.source, enc.t) or enc)
                out.realtime.X.append(vector(row, REALTIME_FEATURES))
                out.realtime.y.append(realtime_label(tl, enc, times))
                out.realtime.patient.append(pid)
                out.realtime.keys.append(enc.source)
    return out


def collect_population(
    data: Sources,
    evaluate: Evaluator,
    labels: dict[tuple[str, str], list[LabelRow]],
    *,
    validate: Mode = "fast",
    rule_triggers: dict[str, str] | None = None,
    rule_levels: dict[str, str] | None = None,
    realtime: bool = True,
) -> Collected:
    """:func:`collect` over every patient under ``data``; the result's ``report`` says what
    was read and which resources were skipped (``file:line``)."""
    report = ReadReport()
    out = collect(
        iter_timelines(data, validate=validate, report=report),
        evaluate,
        labels,
        rule_triggers=rule_triggers,
        rule_levels=rule_levels,
        realtime=realtime,
    )
    out.report = report
    return out


def fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over the relative names and bytes of every input file (sorted)."""
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in files:
            rel = p.relative_to(root) if root.is_dir() else Path(p.name)
            h.update(f"\0{rel.as_posix()}\0".encode())
            with p.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()
