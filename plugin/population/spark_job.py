"""The population scan as a Spark application: what a cluster's ``spark-submit`` runs.

Stage the flat tables once with DuckDB (``dxsafety scan DIR --engine duckdb --stage STAGE``),
copy ``STAGE`` to storage every executor can read (HDFS, S3, a shared file system), then::

    spark-submit --master spark://host:7077 --driver-memory 4g --executor-memory 4g \\
        --py-files dxsafety.zip plugin/population/spark_job.py \\
        STAGE --rules rules --as-of 2026-11-01 --out findings.csv

The job compiles the rules (:mod:`plugin.population.compile`), runs every query on the
cluster over the staged Parquet (:class:`~plugin.population.engine.SparkRunner`) and writes the
findings as ``dxsafety scan --out`` does (CSV, or JSON for ``.json``). Without ``--master`` the
master is the one ``spark-submit`` was given. A rule the compiler cannot translate cannot run
here (the Python engine needs the FHIR files): the job names it and exits non-zero rather than
write a partial result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugin.errors import ExitCode
from plugin.population.compile import compile_rules
from plugin.population.engine import run
from plugin.population.scan import spark_runner, spark_session
from plugin.rules import RuleSet, data_gaps, load_rules
from plugin.scan import kinds_present, rank_key
from plugin.timeline.model import Finding

CATALOGUE = Path(__file__).resolve().parents[2] / "rules"


def scan_staged(spark: Any, stage: Path, ruleset: RuleSet, *, as_of: datetime) -> list[Finding]:
    """Every rule of ``ruleset`` over the tables staged in ``stage``, on ``spark``. Rules the
    source cannot feed (data gaps, from the resource counts in ``manifest.json``) are left out
    or marked as the other engines do. Raises ``NotCompiled`` naming rules with no SQL form."""
    from plugin.errors import NotCompiled

    manifest = json.loads((stage / "manifest.json").read_text())
    gaps = data_gaps(ruleset, kinds_present(Counter(manifest.get("types", {}))))
    rules = [r for r in ruleset.rules if r.id not in gaps or gaps[r.id].evaluated]
    plan = compile_rules(rules, ruleset.valuesets, as_of=as_of)
    if plan.not_compiled:
        names = ", ".join(f"{rid} ({why})" for rid, why in sorted(plan.not_compiled.items()))
        raise NotCompiled(f"no SQL form for: {names}")
    findings = run(spark_runner(spark, stage), plan)
    for f in findings:
        gap = gaps.get(f.rule_id)
        if gap is not None:
            f.extra["data_gap"] = gap.reason
    findings.sort(key=rank_key)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="spark_job.py", description="dxsafety rules over a staged population, on Spark"
    )
    ap.add_argument("stage", type=Path, help="folder staged by dxsafety scan --stage")
    ap.add_argument("--rules", type=Path, action="append",
                    help="rules directory (repeatable; default: the catalogue)")  # fmt: skip
    ap.add_argument("--as-of", help="scan time closing absence windows (default now, UTC)")
    ap.add_argument("--out", type=Path, required=True, help="findings file (.csv or .json)")
    ap.add_argument("--master", help="Spark master (default: the one spark-submit was given)")
    args = ap.parse_args(argv)

    from plugin.cli.scan import parse_as_of, write_findings
    from plugin.errors import NotCompiled

    if not (args.stage / "manifest.json").is_file():
        sys.stderr.write(f"{args.stage}: no manifest.json (stage it: dxsafety scan --stage)\n")
        return int(ExitCode.INPUT_NOT_FOUND)
    ruleset = load_rules(args.rules or [CATALOGUE])
    as_of = parse_as_of(args.as_of)
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()  # a caller's session is left running
    spark = spark_session(args.master) if args.master else _submitted_session()
    try:
        findings = scan_staged(spark, args.stage, ruleset, as_of=as_of)
    except NotCompiled as exc:
        sys.stderr.write(f"spark_job: {exc}\n")
        return int(ExitCode.RULES_INVALID)
    finally:
        if running is None:
            spark.stop()
    write_findings(findings, args.out, "json" if args.out.suffix == ".json" else "csv")
    # an entry point, like the CLI modules, reports on its own streams
    sys.stdout.write(f"{len(findings)} findings as of {as_of.astimezone(UTC).date()}: {args.out}\n")
    return int(ExitCode.OK)


def _submitted_session() -> Any:
    """The session of the master ``spark-submit`` set (sizes come from its options)."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName("dxsafety-scan")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")  # the plan runs hundreds of small jobs
    return spark


if __name__ == "__main__":
    sys.exit(main())
