"""Spark (local[2]) runs the same compiled plan as DuckDB (issue 12): same findings, and plans
without nested-loop or Cartesian joins (what ran the whole catalogue out of Java heap).

One Spark session for the module: starting the JVM is most of the cost on a 2-core machine.
The whole catalogue over a 20,000-patient population is a bench run (docs/population.md).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plugin.population.compile import Plan, compile_rules
from plugin.population.engine import DuckRunner, SparkRunner, run
from plugin.population.flatten import connect, flatten
from plugin.rules import load_rules
from tests.population.test_differential import _assert_same, _python

pytest.importorskip("pyspark")

ROOT = Path(__file__).resolve().parents[2]
BULK = Path("/work/shared/data/bulk-ndjson-10-patients")
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
# a sequence with principal diagnoses and an anti-joined not_diagnosis (SP-1), one with
# column predicates on the outcome (ED-1), an absence with a union of index selectors,
# interpretation, age, death and seven windowed exclusions (TR-1), and an absence with
# unit-converted thresholds and expect_any windows of their own (TR-7)
TRIGGERS = ("SP-1", "ED-1", "TR-1", "TR-7")
NESTED = ("BroadcastNestedLoopJoin", "CartesianProduct")


def _sources() -> list[Path]:
    return [ROOT / "fhir_fixtures", *([BULK] if BULK.exists() else [])]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """The fixtures (and the Bulk sample) flattened by DuckDB and staged as Parquet."""
    from plugin.population.scan import stage

    out = tmp_path_factory.mktemp("spark") / "stage"
    con = connect()
    counts = flatten(con, _sources())
    stage(con, out, {"files": [], **counts})
    yield con, out
    con.close()


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from plugin.population.scan import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def prepared(ruleset, staged, spark) -> tuple[Plan, SparkRunner]:  # type: ignore[no-untyped-def]
    """The catalogue's plan and a Spark runner with its per-scan tables made (once: it is
    the most of a test's Spark jobs on these small sources)."""
    from plugin.population.scan import spark_runner

    plan = compile_rules(ruleset.rules, ruleset.valuesets, as_of=AS_OF)
    runner = spark_runner(spark, staged[1])
    runner.prepare(plan)
    return plan, runner


def test_spark_same_findings(ruleset, staged, prepared) -> None:  # type: ignore[no-untyped-def]
    """The rules above, transpiled to Spark SQL, over the staged Parquet: the findings of
    DuckDB and of the Python engine, by key, outcome, evidence, window end and extra."""
    con, _ = staged
    full, runner = prepared
    rules = [r for t in TRIGGERS for r in ruleset.find(t)]
    plan = Plan([c for c in full.compiled if c.rule in rules], {}, full.sets)
    assert len(plan.compiled) == len(rules)
    duck = run(DuckRunner(con), plan)
    on_spark = run(runner, plan, prepared=True)
    assert len({f.rule_id for f in duck}) >= 3, "the sources should fire most of these rules"
    _assert_same(duck, on_spark, "spark vs duckdb")
    _assert_same(_python(_sources(), rules, AS_OF), on_spark, "spark vs python")


def _physical(df: Any) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


def test_no_nested_loop_joins(prepared, spark) -> None:  # type: ignore[no-untyped-def]
    """Every compiled rule of the catalogue, and the per-scan tables, plan on Spark with
    equality-keyed joins only. The runner materialises each shared step and inlines the
    others into the one step reading them, so planning the shared steps and the outer query
    plans every join. Shared steps are then stood in for by empty RDD-backed frames (no rows
    to run, no statistics the optimiser could prune a join with): the catalogue is planned,
    not run."""
    plan, _ = prepared
    # the check can fail: a join on a range alone is planned as a nested loop
    probe = spark.sql("SELECT a.eid FROM picked a JOIN picked b ON a.t < b.t")
    assert any(k in _physical(probe) for k in NESTED)
    bad = []
    for name in ("ev_set", "picked", "ev_conv"):
        if any(k in _physical(spark.table(name)) for k in NESTED):
            bad.append(name)
    empty = spark.sparkContext.emptyRDD()
    for compiled in plan.compiled:
        views = []
        for name, sql, shared in compiled.steps("spark"):
            df = spark.sql(sql)
            if (shared or not name) and any(k in _physical(df) for k in NESTED):
                bad.append(f"{compiled.rule.title} / {name or 'outer'}")
            if not name:
                break
            (spark.createDataFrame(empty, df.schema) if shared else df).createOrReplaceTempView(
                name
            )
            views.append(name)
        for name in views:
            spark.catalog.dropTempView(name)
    assert not bad, bad


def test_spark_job_main(ruleset, staged, spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The cluster entry point (``spark_job.main``, what ``spark-submit`` runs) on the staged
    tables with a rules directory of its own: the findings file holds DuckDB's keys; a stage
    without a manifest is refused. Last in the module: it prepares the session's per-scan
    tables for its own plan."""
    from plugin.population import spark_job

    roots = [ROOT / "rules" / "valuesets", *(r.path for r in ruleset.find("SP-1"))]
    con, stage_dir = staged
    plan = compile_rules(load_rules(roots).rules, ruleset.valuesets, as_of=AS_OF)
    duck = run(DuckRunner(con), plan)
    out = tmp_path / "findings.csv"
    argv = [str(stage_dir), "--as-of", AS_OF.date().isoformat(), "--out", str(out),
            "--master", "local[2]", *(a for r in roots for a in ("--rules", str(r)))]  # fmt: skip
    assert spark_job.main(argv) == 0
    with out.open(newline="", encoding="utf-8") as fh:
        keys = sorted(row["key"] for row in csv.DictReader(fh))
    assert keys == sorted(f.key for f in duck)
    assert keys, "the staged sources should give SP-1 findings"
    assert spark_job.main([str(tmp_path), "--out", str(out)]) != 0  # no manifest.json
