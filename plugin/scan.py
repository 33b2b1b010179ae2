"""Population scan: FHIR files → per-patient timelines → rule findings (→ ranker scores).

Memory stays bounded: :func:`plugin.fhir.stage.iter_patients` stages Bulk NDJSON by
patient on disk and yields one patient at a time; only findings are kept.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from plugin.rules import RuleSet, evaluate
from plugin.timeline.model import Finding, Timeline


class FindingScorer(Protocol):
    def score_findings(
        self, findings: Sequence[Finding], timelines: dict[str, Timeline]
    ) -> list[Finding]: ...


class FindingSink(Protocol):
    def upsert_findings(
        self, findings: Iterable[Finding], timelines: dict[str, Timeline] | None = None
    ) -> int: ...


@dataclass(slots=True, kw_only=True)
class ScanSummary:
    patients: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    as_of: datetime | None = None

    @property
    def resources_total(self) -> int:
        return sum(self.resources.values())


@dataclass(slots=True, kw_only=True)
class ScanResult:
    findings: list[Finding]
    summary: ScanSummary


def rank_key(f: Finding) -> tuple[float, int, str, str]:
    """Model score first (when present), then rule level, then index time (newest first)."""
    from plugin.rules.schema import Level

    level = Level[f.level] if f.level in Level.__members__ else Level.informational
    score = f.score if f.score is not None else -1.0
    return (-score, -int(level), f"{-f.index_start.timestamp():020.0f}", f.key)


def scan_population(
    paths: Sequence[str | Path] | str | Path,
    ruleset: RuleSet,
    *,
    as_of: datetime | None = None,
    model: FindingScorer | None = None,
    validate: Literal["fast", "full", "none"] = "fast",
    sink: FindingSink | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 500,
) -> ScanResult:
    """Scan every patient in ``paths`` with ``ruleset``; findings ranked best first.

    ``sink`` (the worklist store) receives findings batch by batch with the timelines
    they came from, so a killed scan loses at most one batch and a re-run is idempotent.
    """
    from plugin.fhir.parse import timeline_from_resources
    from plugin.fhir.read import ReadReport
    from plugin.fhir.stage import iter_patients

    if isinstance(paths, str | Path):
        paths = [paths]
    as_of = as_of or datetime.now(UTC)
    started = time.perf_counter()
    report = ReadReport()
    summary = ScanSummary(as_of=as_of)
    findings: list[Finding] = []
    batch: list[Finding] = []
    batch_tl: dict[str, Timeline] = {}

    def flush() -> None:
        nonlocal batch, batch_tl
        scored = model.score_findings(batch, batch_tl) if model is not None and batch else batch
        if sink is not None and scored:
            sink.upsert_findings(scored, batch_tl)
        findings.extend(scored)
        batch, batch_tl = [], {}

    for pid, resources in iter_patients([Path(p) for p in paths], validate=validate, report=report):
        timeline = timeline_from_resources(resources, validate="none")  # staged = validated
        summary.patients += 1
        hits = evaluate(ruleset, timeline, as_of=as_of)
        if hits:
            batch.extend(hits)
            batch_tl[pid] = timeline
        if len(batch) >= batch_size:
            flush()
        if progress is not None:
            progress(summary.patients)
    flush()
    _fill_report(summary, report)
    summary.findings_by_rule = Counter(f.rule_id for f in findings)
    summary.seconds = time.perf_counter() - started
    findings.sort(key=rank_key)
    return ScanResult(findings=findings, summary=summary)


def _fill_report(summary: ScanSummary, report: Any) -> None:
    summary.resources = Counter(getattr(report, "by_type", {}) or {})
    summary.skipped = int(getattr(report, "skipped", 0) or 0)
    summary.skipped_examples = [str(e) for e in getattr(report, "errors", [])[:20]]
