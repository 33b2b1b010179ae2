"""Run each rule's own test cases (``<rule>.test.yaml``): ``dxsafety rules test``.

A case is either inline events (built into a timeline by the same derivation the FHIR
path uses) or a fixture folder of FHIR JSON, read through the population pipeline with full
validation (a resource it would skip fails the case, with its ``file:line``). ``flag`` expects
at least one finding (or exactly ``count``), ``no_flag`` none; ``todo_*`` cases are reported,
never failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from plugin.errors import FhirParseError, RuleProblem, SourceLocation
from plugin.rules.engine import Rule, RuleSet, evaluate_rule
from plugin.rules.loader import _parse, load_rules
from plugin.rules.schema import TestCase, TestFile
from plugin.timeline.model import Finding, Timeline

DEFAULT_AS_OF = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    rule_id: str
    rule_title: str
    name: str
    expect: str
    findings: int
    passed: bool | None  # None: a todo case
    location: SourceLocation
    message: str = ""


def test_file_for(rule: Rule) -> Path:
    path = Path(rule.path)
    name = rule.spec.tests or path.name.removesuffix(".yaml") + ".test.yaml"
    return path.parent / name


def _as_of(case: TestCase) -> datetime:
    if case.as_of is None:
        return DEFAULT_AS_OF
    if isinstance(case.as_of, date) and not isinstance(case.as_of, datetime):
        return datetime(case.as_of.year, case.as_of.month, case.as_of.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(str(case.as_of))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fixture_timelines(folder: Path) -> list[Timeline]:
    """The timelines of a fixture folder through the population pipeline, every resource
    validated in full. A rule test reads every resource it is given: when one is skipped this
    raises :class:`FhirParseError` with its ``file:line`` and reason, so the case fails rather
    than test less than it says."""
    from plugin.fhir.read import ReadReport
    from plugin.fhir.stage import iter_timelines

    report = ReadReport()
    timelines = list(iter_timelines(folder, validate="full", report=report))
    if report.skipped:
        first = report.errors[0]
        more = f" (and {report.skipped - 1} more)" if report.skipped > 1 else ""
        raise FhirParseError(
            first.where,
            f"fixture resource skipped: {first.what}{more}",
            first.resource_type,
            first.resource_id,
        )
    return timelines


def _resolve_fixture(fixture: str, rules_root: Path) -> Path:
    candidates = [Path(fixture), rules_root.parent / fixture, rules_root / fixture]
    return next((c for c in candidates if c.exists()), candidates[0])


def run_case(rule: Rule, case: TestCase, rules_root: Path) -> list[Finding]:
    from plugin.timeline.spec import timeline_from_spec

    as_of = _as_of(case)
    if case.events is not None:
        timelines: list[Timeline] = [
            timeline_from_spec({"patient": case.patient or {}, "events": case.events})
        ]
    else:
        folder = _resolve_fixture(str(case.fixture), rules_root)
        if not folder.exists():
            raise FileNotFoundError(f"fixture folder {case.fixture} not found")
        timelines = fixture_timelines(folder)
    return [f for tl in timelines for f in evaluate_rule(rule, tl, as_of=as_of)]


def run_rule_tests(rules: RuleSet, rules_root: Path) -> tuple[list[CaseResult], list[RuleProblem]]:
    """Run every case of every rule. Returns (results, problems with test files)."""
    results: list[CaseResult] = []
    problems: list[RuleProblem] = []
    for rule in rules.rules:
        file = test_file_for(rule)
        if not file.exists():
            problems.append(
                RuleProblem(SourceLocation(rule.path, 1, 1), "T001", f"no test file {file.name}")
            )
            continue
        _data, spec, smap, probs = _parse(file, TestFile)
        problems += probs
        if spec is None:
            continue
        for i, case in enumerate(spec.cases):
            loc = smap.locate(("cases", i))
            try:
                n = len(run_case(rule, case, rules_root))
                want_flag = case.expect in ("flag", "todo_flag")
                ok = (n > 0 if case.count is None else n == case.count) if want_flag else n == 0
                message = "" if ok else f"expected {case.expect}, got {n} finding(s)"
            except Exception as exc:  # a broken case is a failed case, not a crash
                n, ok, message = 0, False, f"{type(exc).__name__}: {exc}"
            results.append(
                CaseResult(
                    rule_id=rule.id,
                    rule_title=rule.title,
                    name=case.name,
                    expect=case.expect,
                    findings=n,
                    passed=None if case.expect.startswith("todo") else ok,
                    location=loc,
                    message=message,
                )
            )
    return results, problems


def run_tests_in(path: str | Path) -> tuple[list[CaseResult], list[RuleProblem]]:
    root = Path(path)
    rules = load_rules(root)
    return run_rule_tests(rules, root if root.is_dir() else root.parent)
