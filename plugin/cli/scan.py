"""``dxsafety scan SOURCE``: run the rules (and a model) over FHIR files or a FHIR server."""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import orjson

from plugin.cli.ruleargs import add_rules_arguments, load_ruleset
from plugin.errors import EmptySource, ExitCode, FhirError, ModelError, StageMismatch, fatal
from plugin.population.steps import step
from plugin.scan import ScanResult
from plugin.timeline.model import Finding

CSV_FIELDS = (
    "patient_id",
    "index_ref",
    "index_start",
    "rule_id",
    "rule_title",
    "level",
    "score",
    "missed_dx",
    "reasons",
    "summary",
    "outcome_ref",
    "evidence",
    "window_end",
    "key",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", help="scan FHIR data (files, a directory or a FHIR server URL)")
    p.add_argument("source", help="file or directory of FHIR JSON/NDJSON, or http(s)://…/fhir")
    add_rules_arguments(p)
    p.add_argument(
        "--status",
        default="stable,test,experimental",
        help="rule statuses to run (comma-separated)",
    )
    p.add_argument("--out", type=Path, help="write findings here (default: table on stdout)")
    p.add_argument("--format", choices=("csv", "json"), help="output format (default from --out)")
    p.add_argument(
        "--model", type=Path, help="ranker model directory: adds score, missed_dx, reasons"
    )
    p.add_argument("--as-of", help="scan time for closing absence windows (default now, UTC)")
    p.add_argument(
        "--validate",
        choices=("fast", "full"),
        default="fast",
        help="fast: check what the timeline reads; full: fhir.resources R4B models",
    )
    p.add_argument(
        "--assume-tz",
        metavar="ZONE",
        type=_zone,
        help="IANA time zone for date-times without a UTC offset (e.g. Europe/Paris; "
        "default: read as UTC, each one counted as a warning)",
    )
    p.add_argument(
        "--store",
        metavar="DATABASE_URL",
        help="also write findings into the worklist database (idempotent)",
    )
    p.add_argument("--top", type=int, default=25, help="rows in the on-screen table")
    from plugin.fhir.remote import add_remote_arguments

    add_remote_arguments(p)
    # issue 12: population engines (plugin/population, docs/population.md)
    p.add_argument(
        "--engine",
        choices=("python", "duckdb", "spark"),
        default=None,
        help="duckdb (default): rules compiled to SQL over flat tables; python: the "
        "per-patient engine (the default when --assume-tz or --validate full is given, "
        "which only it reads); spark: the same plan on Spark over staged Parquet",
    )
    p.add_argument("--spark-master", default="local[2]", help="Spark master URL (--engine spark)")
    p.add_argument(
        "--stage", type=Path, metavar="DIR", help="stage flat tables as Parquet here (reused)"
    )
    p.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 1GB (spills beyond)")
    p.add_argument(
        "--partitions", type=int, metavar="N",
        help="(SQL engines) flatten the population in N patient partitions, one at a time "
        "(default: one per ~1 GB of JSON input; memory and working files stay one partition)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, metavar="N",
        help="processes building the flagged patients' timelines for --model with a SQL "
        "engine (default: the number of CPUs)",
    )  # fmt: skip
    p.add_argument(
        "--incremental",
        action="store_true",
        help="(--engine duckdb --stage DIR) apply SOURCE, e.g. a Bulk _since export, to the "
        "stage of earlier --incremental scans: only patients with new resources are "
        "re-flattened and re-evaluated, --store gets the new or changed findings and marks "
        "those no longer produced; into an empty DIR it builds the stage",
    )
    p.set_defaults(handler=run)


def _zone(name: str) -> tzinfo:
    from plugin.fhir.values import zone

    try:
        return zone(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_as_of(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def finding_row(f: Finding) -> dict[str, Any]:
    return {
        "patient_id": f.patient_id,
        "index_ref": f.index_ref,
        "index_start": f.index_start.isoformat(),
        "rule_id": f.rule_id,
        "rule_title": f.rule_title,
        "level": f.level,
        "score": "" if f.score is None else f"{f.score:.4f}",
        "missed_dx": "; ".join(f"{d} {p:.2f}" for d, p in f.missed_dx),
        "reasons": "; ".join(f.reasons),
        "summary": f.summary,
        "outcome_ref": f.outcome_ref or "",
        "evidence": " ".join(f.evidence),
        "window_end": f.window_end.isoformat(),
        "key": f.key,
    }


def finding_json(f: Finding) -> dict[str, Any]:
    data = asdict(f)
    for k in ("index_start", "index_end", "window_end"):
        data[k] = data[k].isoformat() if data[k] is not None else None
    return data


def write_findings(findings: list[Finding], out: Path, fmt: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    if fmt == "json":
        tmp.write_bytes(
            orjson.dumps([finding_json(f) for f in findings], option=orjson.OPT_INDENT_2)
        )
    else:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(finding_row(f) for f in findings)
    tmp.replace(out)  # never leave a half-written findings file


def _source_paths(args: argparse.Namespace, workdir: Path) -> Path:
    if not args.source.startswith(("http://", "https://")):
        path = Path(args.source)
        if not path.exists():
            fatal(f"{path}: no such file or directory", ExitCode.INPUT_NOT_FOUND)
        return path
    from plugin.fhir.remote import cli_error, download

    try:
        return download(args.source, args, workdir)
    except FhirError as exc:  # 401, outage, deadline: a clear message and exit 20/21/22
        raise cli_error(exc) from None


def run(args: argparse.Namespace) -> int:
    with step("load_rules"):
        ruleset = load_ruleset(args, statuses=set(args.status.split(",")))
    model = None
    if args.model is not None:
        from plugin.rank import load_model

        try:
            model = load_model(args.model)
        except ModelError as exc:
            fatal(f"{args.model}: {exc}", ExitCode.MODEL_INVALID)
    store = None
    if args.store:
        from plugin.worklist.store import Store

        store = Store(args.store)
    from plugin.fhir.values import assume_timezone

    try:
        with (
            tempfile.TemporaryDirectory(prefix="dxsafety-fetch-") as tmp,
            assume_timezone(getattr(args, "assume_tz", None)),
        ):
            source = _source_paths(args, Path(tmp))
            args.engine = choose_engine(args)
            if args.engine != "python":
                result = _scan_sql(source, ruleset, args, model, store)
            else:
                result = _scan_with_progress(source, ruleset, args, model, store)
    except EmptySource as exc:  # nothing to scan is an error, never "0 patients, 0 findings"
        fatal(str(exc), ExitCode.INPUT_NOT_FOUND)
    except StageMismatch as exc:  # a --stage DIR this scan cannot use (issue 12 item 5)
        fatal(str(exc), ExitCode.USAGE)
    finally:
        if store is not None:
            store.close()  # its pooled connections, not left for the garbage collector
    summary = result.summary
    if args.out is not None:
        fmt = args.format or ("json" if args.out.suffix == ".json" else "csv")
        with step("write_findings"):
            write_findings(result.findings, args.out, fmt)
    else:
        print_table(result.findings[: args.top], len(result.findings))
    print_summary(summary, ruleset, args.out, result.report)
    for line in result.gap_lines():  # missing data is not absence of care (issue 11)
        print(line, file=sys.stderr)
    return 0


def choose_engine(args: argparse.Namespace) -> str:
    """The engine asked for, else DuckDB, unless an option only the Python engine reads is
    given (--assume-tz, --validate full): then the Python engine, not an error."""
    engine: str | None = getattr(args, "engine", None)
    if engine is not None:
        return engine
    if getattr(args, "assume_tz", None) is not None or getattr(args, "validate", "") == "full":
        return "python"
    return "duckdb"


def _scan_sql(  # type: ignore[no-untyped-def]
    source, ruleset, args, model, store
) -> ScanResult:
    """--engine duckdb|spark (issue 12)."""
    if getattr(args, "incremental", False):
        return _scan_incremental(source, ruleset, args, model, store)
    from plugin.population.scan import scan_sql

    if getattr(args, "assume_tz", None) is not None:  # the SQL path reads such times as UTC
        fatal("--assume-tz needs --engine python for now", ExitCode.USAGE)
    result = scan_sql(
        source, ruleset, as_of=parse_as_of(args.as_of), engine=args.engine,
        stage_dir=args.stage, spark_master=args.spark_master, memory_limit=args.memory_limit,
        parts=getattr(args, "partitions", None),
    )  # fmt: skip
    if model is None and store is None:
        return result
    # The flagged patients' timelines, built once (issue 12 item 6): scored with the model,
    # and their snapshots made for the store, in worker processes; batches go to the store
    # as they come.
    import time

    from plugin.population.rank import flagged_batches
    from plugin.scan import rank_key

    started = time.perf_counter()
    scored: list[Finding] = []
    with step("rank"):
        for batch, snapshots in flagged_batches(
            result.findings, source, model, snapshots=store is not None,
            validate=args.validate, workers=getattr(args, "workers", None),
            rule_order=[r.id for r in ruleset.rules], memory_limit=args.memory_limit,
        ):  # fmt: skip
            scored += batch
            if store is not None:
                store.upsert_findings(batch, snapshots=snapshots)
    if model is not None:
        result.findings = sorted(scored, key=rank_key)
        result.summary.seconds += time.perf_counter() - started
    return result


def _scan_incremental(  # type: ignore[no-untyped-def]
    source, ruleset, args, model, store
) -> ScanResult:
    """--incremental (issue 12 item 5; plugin/population/incremental.py)."""
    from plugin.population.incremental import scan_incremental

    if args.engine != "duckdb" or args.stage is None:
        fatal("--incremental needs --engine duckdb and --stage DIR", ExitCode.USAGE)
    if model is not None or getattr(args, "assume_tz", None) is not None:
        fatal("--incremental does not take --model or --assume-tz yet", ExitCode.USAGE)
    done = scan_incremental(
        source, ruleset, as_of=parse_as_of(args.as_of), stage_dir=args.stage,
        memory_limit=args.memory_limit, sink=store,
    )  # fmt: skip
    what = "built the stage" if done.built else f"{done.files} new file(s)"
    print(f"incremental: {what}, {done.resources} resources; re-flattened "
          f"{done.reflattened} patients, re-evaluated {done.reevaluated}; "
          f"{len(done.changed)} new or changed findings, {len(done.gone)} no longer produced"
          + (" (store updated)" if store is not None else ""), file=sys.stderr)  # fmt: skip
    return done.result


def _scan_with_progress(  # type: ignore[no-untyped-def]
    source, ruleset, args, model, store
) -> ScanResult:
    if getattr(args, "incremental", False):  # never silently a full scan (issue 12 item 5)
        fatal("--incremental needs --engine duckdb and --stage DIR", ExitCode.USAGE)
    from plugin.scan import scan_population

    kwargs = dict(as_of=parse_as_of(args.as_of), model=model, validate=args.validate, sink=store)
    if not sys.stderr.isatty():
        return scan_population(source, ruleset, **kwargs)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} patients"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=None)
        return scan_population(
            source, ruleset, progress=lambda n: bar.update(task, completed=n), **kwargs
        )


def print_table(findings: list[Finding], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Ranked findings (top {len(findings)} of {total})")
    for col in ("#", "score", "level", "rule", "patient", "index", "missed dx", "why"):
        table.add_column(col, overflow="fold")
    for i, f in enumerate(findings, 1):
        table.add_row(
            str(i),
            "" if f.score is None else f"{f.score:.2f}",
            f.level,
            f.rule_title,
            f.patient_id,
            f"{f.index_ref} {f.index_start.date()}",
            ", ".join(d for d, _ in f.missed_dx[:3]),
            "; ".join(f.reasons[:4]) or f.summary,
        )
    Console(width=220).print(table)


def print_summary(summary, ruleset, out, report) -> None:  # type: ignore[no-untyped-def]
    err = sys.stderr
    print(
        f"scanned {summary.patients} patients, {sum(summary.findings_by_rule.values())} "
        f"findings in {summary.seconds:.1f} s (as of {summary.as_of:%Y-%m-%d})"
        + (f"; written to {out}" if out else ""),
        file=err,
    )
    for line in report.summary_lines():
        print(line, file=err)
    for rule in ruleset.rules:
        n = summary.findings_by_rule.get(rule.id, 0)
        if n:
            print(f"  {n:6d}  {rule.trigger or '':6s} {rule.title}", file=err)
