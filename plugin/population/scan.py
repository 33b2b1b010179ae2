"""``scan --engine duckdb|spark``: flatten (or reuse staged Parquet), run the compiled rules.

1. **Flatten** the source with DuckDB (:mod:`plugin.population.flatten`), or reuse the
   Parquet staged by an earlier scan in ``stage_dir`` (``manifest.json`` there says which
   files it was built from; a changed file list or size re-flattens).
2. **Stage** the tables as Parquet partitioned by ``hash(pid) % buckets`` (``events/``,
   ``codes/``, ``patients/``), so a re-scan and Spark read Parquet, not JSON.
3. **Data gaps**: :func:`plugin.rules.data_gaps` on the kinds of resource the source holds
   (the same decision the Python engine takes): rules that cannot be evaluated are dropped,
   partial gaps mark their findings.
4. **Run** the compiled plan (:mod:`plugin.population.compile`) on DuckDB, or on Spark over
   the staged Parquet. Rules the compiler cannot translate (``positive``/``abnormal``
   result semantics, report ``text``) run through the Python engine, on the same source.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from plugin.errors import FhirParseError, StageMismatch
from plugin.fhir.read import ReadReport, list_input_files, nothing_read
from plugin.population.compile import Plan, compile_rules
from plugin.population.engine import DuckRunner, Runner, SparkRunner, run
from plugin.population.flatten import connect, flatten, flatten_resources
from plugin.population.partition import (
    drop,
    load_part,
    part_bytes_for,
    parts_for,
    read_partitioned,
)
from plugin.population.steps import step
from plugin.rules import DataGap, RuleSet, data_gaps
from plugin.scan import ScanResult, ScanSummary, kinds_present, rank_key
from plugin.timeline.model import Finding

TABLES = ("events", "codes", "patients", "text_concepts")
BUCKETS = 16


def _fingerprint(sources: Sequence[str | Path]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for src in sources:
        for f in list_input_files(Path(src)):
            st = f.stat()
            out.append([str(f.resolve()), st.st_size, int(st.st_mtime)])
    return out


def stage(con: Any, stage_dir: Path, manifest: dict[str, Any], buckets: int = BUCKETS) -> None:
    """Write the flat tables as Parquet partitioned by patient hash, then the manifest."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    bucket = f"hash(pid) % {buckets}"
    queries = {
        "events": f"SELECT *, {bucket} AS bucket FROM events",
        "codes": f"SELECT c.*, hash(e.pid) % {buckets} AS bucket FROM codes c "
        "JOIN events e ON e.eid = c.eid",
        "patients": f"SELECT *, {bucket} AS bucket FROM patients",
        "text_concepts": f"SELECT t.*, hash(e.pid) % {buckets} AS bucket FROM text_concepts t "
        "JOIN events e ON e.eid = t.eid",
    }
    for name, sql in queries.items():
        empty = con.execute(f"SELECT count(*) = 0 FROM {name}").fetchone()
        if empty and empty[0]:  # no partition files: one empty file keeps the schema
            (stage_dir / name / "bucket=0").mkdir(parents=True, exist_ok=True)
            con.execute(
                f"COPY (SELECT * EXCLUDE (bucket) FROM ({sql})) TO "
                f"'{stage_dir / name / 'bucket=0' / 'empty.parquet'}' (FORMAT parquet)"
            )
            continue
        con.execute(
            f"COPY ({sql}) TO '{stage_dir / name}' "
            "(FORMAT parquet, PARTITION_BY (bucket), OVERWRITE_OR_IGNORE true)"
        )
    (stage_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


def load_staged(con: Any, stage_dir: Path, part: int | None = None) -> dict[str, Any]:
    """The staged flat tables as views, all of them or one partition's (``bucket=part``),
    and the stage's manifest."""
    bucket = "*" if part is None else f"bucket={int(part)}"
    for name in TABLES:
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * EXCLUDE (bucket) FROM read_parquet("
            f"'{stage_dir / name / bucket}/*.parquet', hive_partitioning = true)"
        )
    manifest: dict[str, Any] = json.loads((stage_dir / "manifest.json").read_text())
    return manifest


def _staged_is_current(stage_dir: Path | None, fingerprint: list[list[Any]]) -> bool:
    if stage_dir is None or not (stage_dir / "manifest.json").exists():
        return False
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    return bool(manifest.get("files") == fingerprint)


def spark_session(master: str = "local[2]", driver_memory: str = "4g") -> Any:
    """A Spark session for the compiled plan: UTC; in local mode sized for one small machine.

    ``spark.driver.memory`` only takes effect when it is set before the JVM starts, i.e. on
    the first session of the process (a builder option then, as here, in local mode where
    the driver is the executor); under ``spark-submit`` the JVM is already running and
    ``--driver-memory`` / ``--executor-memory`` size it instead. A session that already
    exists is returned as it is."""
    from pyspark.sql import SparkSession

    local = master.startswith("local")
    builder = (
        SparkSession.builder.master(master)
        .appName("dxsafety-scan")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if local:
        builder = (
            builder.config("spark.driver.memory", driver_memory)
            # two cores: few shuffle partitions (AQE coalesces further); a cluster's
            # spark-submit keeps the default 200 or sets its own
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            # the compiled plan is many small queries: no speculative or retried tasks, and
            # the cached tables stay in memory (spilling to disk only past it)
            .config("spark.task.maxFailures", "1")
            .config("spark.sql.inMemoryColumnarStorage.compressed", "true")
        )
    return builder.getOrCreate()


def spark_runner(spark: Any, stage_dir: Path) -> SparkRunner:
    """Register the staged tables as views. ``events`` is read once per scan (for
    ``picked``) and then by eid for the findings, so it stays on disk (Parquet is
    columnar); the smaller tables every rule reads are cached once."""
    for name in TABLES:
        df = spark.read.parquet(str(stage_dir / name)).drop("bucket")
        if name != "events":
            df = df.cache()
        df.createOrReplaceTempView(name)
    return SparkRunner(spark)


def scan_sql(
    sources: Sequence[str | Path] | str | Path,
    ruleset: RuleSet,
    *,
    as_of: datetime,
    engine: str = "duckdb",
    stage_dir: str | Path | None = None,
    spark: Any = None,
    spark_master: str = "local[2]",
    memory_limit: str | None = None,
    parts: int | None = None,
) -> ScanResult:
    """Scan ``sources`` with the compiled rules on DuckDB or Spark; see the module doc.
    ``parts``: patient partitions flattened one at a time (default: by input size,
    :func:`plugin.population.partition.parts_for`)."""
    started = time.perf_counter()
    paths = [sources] if isinstance(sources, str | Path) else list(sources)
    fingerprint = _fingerprint(paths)
    with tempfile.TemporaryDirectory(prefix="dxsafety-pop-") as tmp:
        con = connect(memory_limit=memory_limit, temp_dir=Path(tmp) / "spill")
        sdir = Path(stage_dir) if stage_dir is not None else None
        report = ReadReport()
        findings: list[Finding] | None = None  # found partition by partition
        counted = False
        n_parts = parts if parts is not None else parts_for(paths, part_bytes_for(memory_limit))
        if sdir is not None and _staged_is_current(sdir, fingerprint):
            manifest = load_staged(con, sdir)
            report_from_json(report, manifest.get("report", {}))
        elif n_parts > 1:
            if sdir is None and engine == "spark":
                sdir = Path(tmp) / "stage"
            manifest, findings = _scan_parts(
                con, paths, n_parts, Path(tmp) / "parts", sdir, report, fingerprint,
                ruleset, as_of, run_rules=engine != "spark",
            )  # fmt: skip
            counted = True
        else:
            if sdir is not None and (sdir / "incremental.json").exists():
                # issue 12 item 5: restaging would leave the incremental state behind
                raise StageMismatch(f"{sdir}: kept by --incremental scans; scan with "
                                    "--incremental, or stage into another directory")  # fmt: skip
            counts = flatten(con, paths, report)
            manifest = {"files": fingerprint, **counts, "report": report_json(report)}
            if sdir is None and engine == "spark":
                sdir = Path(tmp) / "stage"
            if sdir is not None:
                with step("stage"):
                    stage(con, sdir, manifest)
        if not counted:  # _scan_parts counts its read before it runs the rules
            read_counts(report, paths, fingerprint, manifest)
        gaps, plan = _plan(ruleset, report, as_of)
        if findings is None:
            runner: Runner
            if engine == "spark":
                if sdir is None:  # set above for spark; kept for the type checker
                    raise ValueError("spark needs a stage directory")
                runner = spark_runner(spark or spark_session(spark_master), sdir)
                findings = run(runner, plan)
            elif "parts" in manifest and sdir is not None:
                # a partitioned stage is a population larger than memory: its re-scan runs
                # the rules a partition at a time too (1,000,000 patients' whole stage ran
                # out of 1500MB in the rules' first step)
                findings = []
                for part in range(int(manifest["parts"])):
                    load_staged(con, sdir, part)
                    findings += run(DuckRunner(con), plan)
            else:
                findings = run(DuckRunner(con), plan)
        if "parts" in manifest:  # the partitions' tables are gone: the manifest counts them
            n_patients = int(manifest["patients"])
        else:
            row = con.execute("SELECT count(*) FROM patients").fetchone()
            n_patients = int(row[0]) if row else 0
        con.close()
    with step("python_rules"):
        findings += _python_rules(paths, ruleset, plan.not_compiled, as_of)
    for f in findings:
        gap = gaps.get(f.rule_id)
        if gap is not None:
            f.extra["data_gap"] = gap.reason
    summary = ScanSummary(as_of=as_of)
    summary.patients = n_patients
    summary.findings_by_rule = Counter(f.rule_id for f in findings)
    summary.seconds = time.perf_counter() - started
    findings.sort(key=rank_key)
    return ScanResult(findings=findings, summary=summary, report=report, gaps=gaps)


def _plan(
    ruleset: RuleSet, report: ReadReport, as_of: datetime
) -> tuple[dict[str, DataGap], Plan]:
    """The data gaps of what was read, and the compiled plan of the rules that can run."""
    gaps = data_gaps(ruleset, kinds_present(report.resources))
    rules = [r for r in ruleset.rules if r.id not in gaps or gaps[r.id].evaluated]
    with step("compile"):
        return gaps, compile_rules(rules, ruleset.valuesets, as_of=as_of)


def _scan_parts(
    con: Any,
    paths: list[str | Path],
    parts: int,
    root: Path,
    sdir: Path | None,
    report: ReadReport,
    fingerprint: list[list[Any]],
    ruleset: RuleSet,
    as_of: datetime,
    *,
    run_rules: bool,
) -> tuple[dict[str, Any], list[Finding] | None]:
    """Read ``paths`` into ``parts`` patient partitions, then flatten each (staging it into
    ``sdir``) and, with ``run_rules``, run the rules on it: memory and working files are
    bounded by a partition. Returns the manifest and the findings (None without
    ``run_rules``)."""
    with step("read_partitioned"):
        read = read_partitioned(con, paths, parts, root, report)
    if read is None:
        raise nothing_read(paths, report)
    manifest: dict[str, Any] = {
        "files": fingerprint, "resources": sum(read.types.values()), "types": read.types,
        "damaged": read.damaged, "dropped": read.dropped, "parts": parts,
    }  # fmt: skip
    read_counts(report, paths, fingerprint, manifest)
    _gaps, plan = _plan(ruleset, report, as_of)
    if sdir is not None:
        for name in TABLES:  # the partitions of an earlier stage are not this scan's
            shutil.rmtree(sdir / name, ignore_errors=True)
    findings: list[Finding] = []
    next_eid, totals = 1, Counter[str]()
    for part in range(parts):
        with step("load_part"):
            load_part(con, read, part)
        counts = flatten_resources(con, first_eid=next_eid)
        next_eid = counts.pop("next_eid")
        totals.update(counts)
        if sdir is not None:
            with step("stage"):
                stage_part(con, sdir, part)
        if run_rules:
            findings += run(DuckRunner(con), plan)
        # done with: the working files and the flat tables stay one partition's (the
        # previous partition's tables held ~250 MB of 20,000 patients' 3 partitions)
        for rt in read.partitioned:
            shutil.rmtree(root / rt / f"bucket={part}", ignore_errors=True)
        for name in TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    drop(con, read)
    shutil.rmtree(root, ignore_errors=True)
    manifest.update(totals)
    manifest["report"] = report_json(report)
    if sdir is not None:
        (sdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest, findings if run_rules else None


def stage_part(con: Any, stage_dir: Path, part: int) -> None:
    """One partition's flat tables as Parquet in ``stage_dir`` (``NAME/bucket=PART``): the
    layout :func:`stage` writes, partitioned by the scan's own patient partitions."""
    for name in TABLES:
        dest = stage_dir / name / f"bucket={part}"
        dest.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY {name} TO '{dest / 'data.parquet'}' (FORMAT parquet)")


def read_counts(
    report: ReadReport,
    paths: Sequence[str | Path],
    fingerprint: list[list[Any]],
    manifest: dict[str, Any],
) -> None:
    """Complete ``report`` (which holds the damaged files' problems, see
    :func:`plugin.population.flatten.check_damaged`) with the counts of the flattening, as
    the Python engine reports a read. Nothing read at all is
    :class:`~plugin.errors.EmptySource`, never "0 patients, 0 findings"."""
    report.files = len(fingerprint)
    report.resources.update(Counter(manifest.get("types", {})))
    if report.read == 0:
        raise nothing_read(paths, report)


def report_json(report: ReadReport) -> dict[str, Any]:
    """The problems of a read, for the stage manifest (a re-scan reports them again)."""
    def items(xs: list[FhirParseError]) -> list[list[str | None]]:
        return [[e.where, e.what, e.resource_type, e.resource_id] for e in xs]

    return {"skipped_by_reason": dict(report.skipped_by_reason), "errors": items(report.errors),
            "warned_by_reason": dict(report.warned_by_reason),
            "warnings": items(report.warnings), "duplicates": report.duplicates}  # fmt: skip


def report_from_json(report: ReadReport, data: dict[str, Any]) -> None:
    report.skipped_by_reason.update(data.get("skipped_by_reason", {}))
    report.skipped = sum(report.skipped_by_reason.values())
    report.errors = [FhirParseError(*e) for e in data.get("errors", [])]
    report.warned_by_reason.update(data.get("warned_by_reason", {}))
    report.warned = sum(report.warned_by_reason.values())
    report.warnings = [FhirParseError(*e) for e in data.get("warnings", [])]
    report.duplicates = int(data.get("duplicates", 0))


def _python_rules(
    paths: list[str | Path], ruleset: RuleSet, ids: dict[str, str], as_of: datetime
) -> list[Finding]:
    """Rules the compiler could not translate, through the Python engine."""
    if not ids:
        return []
    from plugin.fhir.stage import iter_timelines
    from plugin.rules import evaluate

    rules = [r for r in ruleset.rules if r.id in ids]
    report = ReadReport()
    return [
        f for tl in iter_timelines(paths, report=report) for f in evaluate(rules, tl, as_of=as_of)
    ]
