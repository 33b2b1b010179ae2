"""One semantics (issue 12): the Python engine and the SQL engines give the same findings.

Every rule test case, every fixture folder, the shared real data and a synthetic population
go through the per-patient Python engine and the compiled SQL plan (DuckDB; Spark on a
small population). Findings must be identical by key, and for each key the outcome,
evidence, window end, summary and ``extra`` must agree. Rules the compiler cannot translate (they
run through Python in the SQL scan too) are skipped here: comparing Python with itself
proves nothing, and ``test_compiled_share`` keeps that set from growing unnoticed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from plugin.fhir.read import ReadReport
from plugin.fhir.stage import iter_timelines
from plugin.population.compile import compile_rules
from plugin.population.engine import DuckRunner, run
from plugin.population.flatten import connect, flatten
from plugin.population.timelines import load_timelines
from plugin.rules import evaluate
from plugin.rules import schema as rule_schema
from plugin.rules import testing as rule_testing
from plugin.rules.engine import evaluate_rule
from plugin.timeline.model import Finding
from plugin.timeline.spec import timeline_from_spec
from tests.population.shared import SHARED_CASES, shared_source, synth

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _signature(f: Finding) -> tuple[object, ...]:
    extra = {k: v for k, v in f.extra.items() if k != "data_gap"}
    return (f.key, f.outcome_ref, f.evidence, f.window_end, f.index_end, f.summary,
            sorted(extra.items()))  # fmt: skip


def _assert_same(py: list[Finding], sql: list[Finding], where: str) -> None:
    a, b = Counter(f.key for f in py), Counter(f.key for f in sql)
    only_py = [f for f in py if f.key in (a - b)]
    only_sql = [f for f in sql if f.key in (b - a)]
    assert not only_py and not only_sql, (
        f"{where}: only Python {[(f.rule_title, f.patient_id, f.index_ref) for f in only_py[:5]]}"
        f"; only SQL {[(f.rule_title, f.patient_id, f.index_ref) for f in only_sql[:5]]}"
    )
    assert sorted(map(_signature, py)) == sorted(map(_signature, sql)), where


def _compiled(ruleset, as_of):  # type: ignore[no-untyped-def]
    plan = compile_rules(ruleset.rules, ruleset.valuesets, as_of=as_of)
    return plan, [r for r in ruleset.rules if r.id not in plan.not_compiled]


def _python(sources: list[Path], rules, as_of) -> list[Finding]:  # type: ignore[no-untyped-def]
    return [
        f
        for tl in iter_timelines(sources, report=ReadReport())
        for f in evaluate(rules, tl, as_of=as_of)
    ]


def _sql(sources: list[Path], plan) -> list[Finding]:  # type: ignore[no-untyped-def]
    con = connect()
    flatten(con, sources)
    return run(DuckRunner(con), plan)


def test_compiled_share(ruleset) -> None:  # type: ignore[no-untyped-def]
    """Most of the catalogue compiles; what does not is named (result semantics, text)."""
    plan, compiled = _compiled(ruleset, AS_OF)
    assert len(compiled) >= len(ruleset.rules) - 6, plan.not_compiled
    for why in plan.not_compiled.values():
        assert why.startswith("selector key(s)"), why


def _cases(ruleset):  # type: ignore[no-untyped-def]
    for rule in ruleset.rules:
        path = rule_testing.test_file_for(rule)
        spec = rule_schema.TestFile.model_validate(yaml.safe_load(path.read_text()))
        for case in spec.cases:
            if case.events is not None:
                yield rule, case


def test_rule_test_cases(ruleset) -> None:  # type: ignore[no-untyped-def]
    """Every inline case of every rule: same findings from the timeline, Python and SQL."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    compared = 0
    for rule, case in _cases(ruleset):
        as_of = rule_testing._as_of(case)
        plan = compile_rules([rule], ruleset.valuesets, as_of=as_of)
        if plan.not_compiled:
            continue
        tl = timeline_from_spec({"patient": case.patient or {}, "events": case.events})
        load_timelines(con, [tl])
        py = evaluate_rule(rule, tl, as_of=as_of)
        _assert_same(py, run(DuckRunner(con), plan), f"{rule.title} / {case.name}")
        compared += 1
    assert compared >= 60


def test_fixtures(ruleset) -> None:  # type: ignore[no-untyped-def]
    plan, rules = _compiled(ruleset, AS_OF)
    src = [ROOT / "fhir_fixtures"]
    _assert_same(_python(src, rules, AS_OF), _sql(src, plan), "fhir_fixtures")


@pytest.mark.parametrize(("name", "as_of"), SHARED_CASES)
def test_shared_data(ruleset, name: str, as_of: datetime) -> None:  # type: ignore[no-untyped-def]
    src = shared_source(name)
    plan, rules = _compiled(ruleset, as_of)
    py = _python([src], rules, as_of)
    assert py, "the shared data should give findings (or the comparison is empty)"
    _assert_same(py, _sql([src], plan), name)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pop") / "pop"
    return synth(out, 800, 5)


def test_synthetic_population(ruleset, population: Path) -> None:  # type: ignore[no-untyped-def]
    plan, rules = _compiled(ruleset, AS_OF)
    py = _python([population], rules, AS_OF)
    assert len(py) > 50
    _assert_same(py, _sql([population], plan), "synthetic population")
