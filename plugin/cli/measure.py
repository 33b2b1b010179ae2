"""``dxsafety measure``: population measures that need no chart review (SPADE, issue 16)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from plugin.errors import EmptySource, ExitCode, FhirError, PairValidationError, fatal

BY = ("quarter", "year", "site", "age", "sex")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("measure", help="population measures: SPADE observed − expected harm")
    msub = p.add_subparsers(dest="measure_command", metavar="MEASURE", required=True)
    s = msub.add_parser(
        "spade",
        help="SPADE look-forward and look-back for each symptom-disease pair",
        description="Observed − expected disease admissions after symptom treat-and-release "
        "visits, per 10,000 visits with a 95 %% CI, by quarter/site/age/sex, plus look-back. "
        "Writes an HTML report, JSON and CSV.",
    )
    s.add_argument("source", nargs="+", type=Path, help="FHIR files or directories")
    s.add_argument("--pairs", type=Path, default=None,
                   help="pair files (default: the catalogue's rules/spade)")
    s.add_argument("--from", dest="start", default=None, help="first index date YYYY-MM-DD")
    s.add_argument("--to", dest="end", default=None,
                   help="data end YYYY-MM-DD (default: the last visit in the data)")
    s.add_argument("--by", default="quarter,site,age,sex",
                   help=f"strata, comma-separated from {','.join(BY)} (default: "
                   "quarter,site,age,sex)")
    s.add_argument("--html", type=Path, help="write the report here")
    s.add_argument("--json", type=Path, help="write the measures as JSON here")
    s.add_argument("--csv", type=Path, help="write one row per pair and stratum here")
    s.add_argument("--engine", choices=("python", "duckdb"), default="python",
                   help="python: one timeline per patient (default); duckdb: the population "
                   "engine's flat tables (plugin.population), for large populations")
    s.add_argument("--store", help="worklist database URL: link observed visits to their cases "
                   "and show the measures on its dashboard")
    s.add_argument("--worklist-url", default="http://127.0.0.1:8000",
                   help="base URL of the worklist for those links")
    s.set_defaults(handler=run_spade)
    lint = msub.add_parser("lint", help="check the SPADE pair files (file:line:col)")
    lint.add_argument("pairs", nargs="?", type=Path, default=None)
    lint.set_defaults(handler=run_lint)


def _date(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        fatal(f"{flag} must be a date YYYY-MM-DD, got {text!r}", ExitCode.USAGE)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _pairs(path: Path | None):  # type: ignore[no-untyped-def]
    from plugin.cli.ruleargs import print_problems
    from plugin.measure.pairs import load_pairs

    try:
        return load_pairs(path)
    except PairValidationError as exc:
        print_problems(exc.problems)
        fatal(f"{len(exc.problems)} problem(s) in the SPADE pairs", ExitCode.RULES_INVALID)


def run_lint(args: argparse.Namespace) -> int:
    pairs = _pairs(args.pairs)
    print(f"{len(pairs)} pairs OK")
    return 0


def run_spade(args: argparse.Namespace) -> int:
    from plugin.fhir.read import ReadReport
    from plugin.measure import report as rpt
    from plugin.measure.run import measure_source, worklist_links

    by = [b.strip() for b in args.by.split(",") if b.strip()]
    bad = [b for b in by if b not in BY]
    if bad:
        fatal(f"--by: unknown {', '.join(bad)} (choose from {', '.join(BY)})", ExitCode.USAGE)
    if not (args.html or args.json or args.csv):
        fatal("nothing to write: give --html, --json and/or --csv", ExitCode.USAGE)
    for src in args.source:
        if not src.exists():
            fatal(f"{src}: no such file or directory", ExitCode.INPUT_NOT_FOUND)
    pairs = _pairs(args.pairs)
    start, end = _date(args.start, "--from"), _date(args.end, "--to")
    report = ReadReport()
    try:
        if args.engine == "duckdb":
            from plugin.measure.sql import measure_duckdb
            from plugin.population.flatten import connect, flatten

            con = connect()
            if not flatten(con, args.source)["resources"]:
                raise EmptySource(f"{', '.join(map(str, args.source))}: no FHIR resources")
            rep = measure_duckdb(con, pairs, source=", ".join(map(str, args.source)), by=by,
                                 start=start, end=end)  # fmt: skip
        else:
            rep = measure_source(args.source, pairs, report=report, by=by, start=start,
                                 end=end)  # fmt: skip
    except EmptySource as exc:
        fatal(str(exc), ExitCode.INPUT_NOT_FOUND)
    except FhirError as exc:
        fatal(str(exc), ExitCode.INPUT_UNREADABLE)
    if args.store:
        from plugin.measure.run import save_summary
        from plugin.worklist.store import Store

        store = Store(args.store)
        try:
            rep = dataclasses.replace(rep, case_links=worklist_links(rep, store.engine,
                                                                     args.worklist_url))
            save_summary(store.engine, rep)  # the worklist dashboard shows the latest run
        finally:
            store.close()
    if args.json:
        args.json.write_bytes(orjson.dumps(rpt.to_json(rep), option=orjson.OPT_INDENT_2))
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            rpt.write_csv(rep, fh)
    if args.html:
        args.html.write_text(rpt.to_html(rep), encoding="utf-8")
    err = sys.stderr
    print(f"SPADE: {rep.patients} patients, {len(rep.results)} pairs", file=err)
    for r in rep.results:
        lo, hi = r.total.ci
        print(f"  {r.pair.id:30s} n={r.total.n:7d} O={r.total.observed:5d} "
              f"E={r.total.expected:8.1f} excess/10k={r.total.excess_per_10k:7.1f} "
              f"({lo:.1f} to {hi:.1f})", file=err)
    for line in report.summary_lines():
        print(line, file=err)
    if report.skipped:
        print(f"dxsafety: {report.skipped} resources were skipped: the measures are partial",
              file=err)
        return int(ExitCode.INPUT_UNREADABLE)
    return 0
