"""Population scan: FHIR files → per-patient timelines → rule findings (→ ranker scores).

The one population pipeline: :func:`plugin.fhir.stage.iter_timelines` stages the input by
patient on disk (memory stays bounded), validates each resource and builds each patient's
timeline once, reporting every skipped resource by ``file:line`` in a
:class:`~plugin.fhir.read.ReadReport`; :func:`iter_findings` runs the rules on each timeline;
:func:`scan_population` scores and ranks the findings (only findings are kept) and returns the
report with them, so the CLI prints it (:meth:`ReadReport.summary_lines`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from plugin.fhir.read import ReadReport
from plugin.fhir.resource_types import TYPES
from plugin.fhir.stage import Sources, iter_timelines
from plugin.fhir.validate import Mode
from plugin.rules import DataGap, RuleSet, data_gaps, evaluate
from plugin.timeline.model import Finding, Kind, Timeline


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
    """What the scan did; what it read and skipped is ``ScanResult.report``."""

    patients: int = 0
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    as_of: datetime | None = None


@dataclass(slots=True, kw_only=True)
class ScanResult:
    findings: list[Finding]
    summary: ScanSummary
    report: ReadReport = field(default_factory=ReadReport)  # what was read and skipped
    # Rules not evaluated, or evaluated with findings marked, for want of data (issue 11)
    gaps: dict[str, DataGap] = field(default_factory=dict)

    def gap_lines(self) -> list[str]:
        """One line per rule with a data gap, not-evaluated rules first (printed on stderr)."""
        gaps = sorted(self.gaps.values(), key=lambda g: (g.evaluated, g.trigger or g.rule_id))
        return list(dict.fromkeys(g.reason for g in gaps))  # variants of one trigger: once


def rank_key(f: Finding) -> tuple[float, int, float, str]:
    """Model score first (when present; unscored last), then rule level, then index time
    (newest first), then the finding key. The worklist queue (:func:`plugin.worklist.cases.queue`)
    orders the same way: ``score DESC NULLS LAST, level_rank DESC, index_start DESC`` (its last
    tie-break is the row id, not the key)."""
    from plugin.rules.schema import Level

    level = Level[f.level] if f.level in Level.__members__ else Level.informational
    score = f.score if f.score is not None else -1.0
    return (-score, -int(level), -f.index_start.timestamp(), f.key)


def kinds_present(counts: Mapping[str, int]) -> frozenset[Kind]:
    """The timeline kinds a source can hold, from its resources read by type
    (``ReadReport.resources``): each type present gives the kinds of its row in
    :data:`plugin.fhir.resource_types.TYPES`. Any engine asks :func:`plugin.rules.data_gaps`
    with this."""
    by_type = {t.name: t.kinds for t in TYPES}
    return frozenset(k for name, n in counts.items() if n > 0 for k in by_type.get(name, ()))


def source_gaps(ruleset: RuleSet, report: ReadReport) -> dict[str, DataGap]:
    """The data gaps of ``ruleset`` on the source ``report`` describes (issue 11 item 5)."""
    return data_gaps(ruleset, kinds_present(report.resources))


def iter_findings(
    sources: Sources,
    ruleset: RuleSet,
    *,
    as_of: datetime,
    validate: Mode = "fast",
    report: ReadReport,
    gaps: dict[str, DataGap] | None = None,
) -> Iterator[tuple[Timeline, list[Finding]]]:
    """``(timeline, findings)`` for every patient in ``sources`` (findings may be empty), the
    findings of :func:`plugin.rules.evaluate` as of ``as_of``; ``report`` as for
    :func:`plugin.fhir.stage.iter_timelines`.

    Rules the source cannot evaluate for want of data give no finding, and partial gaps mark
    their findings (:mod:`plugin.rules.gaps`). The gaps are decided once, from the resource
    counts, when the first timeline comes (staging has read every file by then); ``gaps``,
    when given, receives them."""
    found: dict[str, DataGap] | None = None
    for timeline in iter_timelines(sources, validate=validate, report=report):
        if found is None:
            found = source_gaps(ruleset, report)
            if gaps is not None:
                gaps.update(found)
        yield timeline, evaluate(ruleset, timeline, as_of=as_of, gaps=found)


def scan_population(
    paths: Sequence[str | Path] | str | Path,
    ruleset: RuleSet,
    *,
    as_of: datetime | None = None,
    model: FindingScorer | None = None,
    validate: Mode = "fast",
    sink: FindingSink | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 500,
) -> ScanResult:
    """Scan every patient in ``paths`` with ``ruleset``; findings ranked best first
    (:func:`rank_key`), with the read report.

    ``sink`` (the worklist store) receives findings batch by batch with the timelines
    they came from, so a killed scan loses at most one batch and a re-run is idempotent.
    """
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

    gaps: dict[str, DataGap] = {}
    pipeline = iter_findings(
        paths, ruleset, as_of=as_of, validate=validate, report=report, gaps=gaps
    )
    for timeline, hits in pipeline:
        summary.patients += 1
        if hits:
            batch.extend(hits)
            batch_tl[timeline.patient.id] = timeline
        if len(batch) >= batch_size:
            flush()
        if progress is not None:
            progress(summary.patients)
    flush()
    summary.findings_by_rule = Counter(f.rule_id for f in findings)
    summary.seconds = time.perf_counter() - started
    findings.sort(key=rank_key)
    return ScanResult(findings=findings, summary=summary, report=report, gaps=gaps)
