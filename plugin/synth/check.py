"""Rules-only PPV on a generated population, measured with the real FHIR edge and rule engine.

Reads the NDJSON back through the one population pipeline (:func:`plugin.scan.iter_findings`:
staged, validated, one timeline per patient, the rules evaluated), and joins each finding to
``labels.csv`` on (patient, trigger, index reference). Per rule it reports the findings, how
many are labelled MOD (the PPV), findings with no label row (the labeller missed a trigger hit)
and labels with no finding (the labeller saw a hit the engine did not), and how many planted
rule-excluded cases (``excluded.csv``) the rule flagged anyway. The read report
(``PpvReport.read``) says whether the generator wrote anything the edge skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from plugin.fhir.read import ReadReport
from plugin.synth.population import Label
from plugin.synth.writer import read_labels


@dataclass(slots=True)
class RulePpv:
    rule_id: str
    trigger: str
    title: str
    published: float | None
    findings: int = 0
    mods: int = 0
    unlabelled: int = 0
    excluded_flagged: int = 0
    found: set[str] = field(default_factory=set)

    @property
    def ppv(self) -> float:
        return self.mods / self.findings if self.findings else float("nan")


@dataclass(slots=True)
class PpvReport:
    rules: list[RulePpv]
    labels_without_finding: dict[str, int]  # trigger -> label rows no rule of it flagged
    patients: int
    read: ReadReport = field(default_factory=ReadReport)  # what was read back, and skipped


def measure(
    data: Path,
    *,
    rules_dir: Path | None = None,
    triggers: Iterable[str] = ("SP-1", "SP-2", "SP-3", "ED-1", "PC-3", "TR-1", "TR-7"),
    as_of: datetime | None = None,
) -> PpvReport:
    from plugin.rules import load_rules
    from plugin.rules.catalogue import default_rules_dir
    from plugin.scan import iter_findings

    wanted = set(triggers)
    ruleset = load_rules(rules_dir or default_rules_dir())
    rules = [r for r in ruleset.rules if r.trigger in wanted]
    labels = read_labels(data / "labels.csv")
    excluded = read_labels(data / "excluded.csv")
    by_key: dict[tuple[str, str, str], Label] = {
        (r.patient_id, r.trigger, r.index_ref): r for r in labels
    }
    excl_keys = {(r.patient_id, r.trigger, r.index_ref) for r in excluded}
    stats = {
        r.id: RulePpv(r.id, r.trigger or "", r.title, _published_ppv(r.published)) for r in rules
    }
    when = as_of or datetime(2026, 6, 30, tzinfo=UTC)
    patients = 0
    paths = sorted(data.glob("*.ndjson"))
    read = ReadReport()
    chosen = replace(ruleset, rules=tuple(rules))
    for _tl, findings in iter_findings(paths, chosen, as_of=when, validate="fast", report=read):
        patients += 1
        for f in findings:
            s = stats[f.rule_id]
            key = (f.patient_id, s.trigger, f.index_ref)
            s.findings += 1
            s.found.add(f"{f.patient_id}|{f.index_ref}")
            label = by_key.get(key)
            if label is None:
                s.unlabelled += 1
                s.excluded_flagged += key in excl_keys
            else:
                s.mods += label.is_mod
    missing: dict[str, int] = {}
    for r in labels:
        if r.trigger not in wanted:
            continue
        hit = any(
            f"{r.patient_id}|{r.index_ref}" in s.found
            for s in stats.values()
            if s.trigger == r.trigger
        )
        if not hit:
            missing[r.trigger] = missing.get(r.trigger, 0) + 1
    return PpvReport(
        sorted(stats.values(), key=lambda s: (s.trigger, s.title)), missing, patients, read
    )


def _published_ppv(published: object) -> float | None:
    value = getattr(published, "ppv", None)
    if value is None and isinstance(published, dict):
        value = published.get("ppv")
    return float(value) if isinstance(value, int | float) else None


def format_report(report: PpvReport) -> str:
    lines = [
        f"{report.patients} patients",
        *report.read.summary_lines(),
        f"{'trigger':8s} {'findings':>8s} {'MOD':>5s} {'PPV':>6s} {'published':>9s} "
        f"{'unlabelled':>10s} {'excl.flagged':>12s}  rule",
    ]
    for s in report.rules:
        pub = f"{s.published:.3f}" if s.published is not None else "-"
        lines.append(
            f"{s.trigger:8s} {s.findings:8d} {s.mods:5d} {s.ppv:6.3f} {pub:>9s} "
            f"{s.unlabelled:10d} {s.excluded_flagged:12d}  {s.title}"
        )
    if report.labels_without_finding:
        lines.append(f"label rows no rule flagged: {report.labels_without_finding}")
    return "\n".join(lines)
