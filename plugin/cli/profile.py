"""``dxsafety profile SOURCE [--rules DIR] [--json FILE] [--html FILE]``: the report a site
runs before trusting a scan (issue 11 item 7). Prints a short text summary; the JSON is for
machines, the HTML (with charts) for a quality officer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plugin.cli.ruleargs import add_rules_arguments, load_ruleset
from plugin.errors import EmptySource, ExitCode, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("profile", help="how much of a FHIR source the rules can read, per field")
    p.add_argument("source", nargs="+", type=Path, help="files or directories of FHIR JSON/NDJSON")
    add_rules_arguments(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the profile as JSON")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the profile as an HTML page")
    p.set_defaults(handler=run)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # never a half-written report


def run(args: argparse.Namespace) -> int:
    from plugin.profile import profile_source, render_html

    for src in args.source:
        if not src.exists():
            fatal(f"{src}: no such file or directory", ExitCode.INPUT_NOT_FOUND)
    ruleset = load_ruleset(args)
    try:
        profile, report = profile_source(args.source, ruleset)
    except EmptySource as exc:
        fatal(str(exc), ExitCode.INPUT_NOT_FOUND)
    for line in report.summary_lines():
        print(line, file=sys.stderr)
    if not profile.patients:
        fatal(
            f"{', '.join(map(str, args.source))}: no patients to profile", ExitCode.INPUT_NOT_FOUND
        )
    print(f"{profile.patients} patients")
    for f in profile.fields.values():
        share = "-" if f.share is None else f"{100 * f.share:.1f}%"
        top = ", ".join(f"{v} ({n})" for v, n in f.unmapped.most_common(3))
        print(
            f"  {f.name:<30} {f.total:>8} records  {share:>7} mapped"
            + (f"  unmapped: {top}" if top else "")
        )
    for kind, years in profile.partial_periods().items():
        print(f"  {kind}: none in {', '.join(map(str, years))} (held in other years)")
    for r in profile.rules:
        if r["data_gap"] or r["missing"]:
            missing = ", ".join(f"0 {k}" for k in r["missing"])
            label = r["trigger"] or r["rule_id"]
            state = (
                "not evaluated"
                if not r["evaluated"]
                else "findings marked data gap"
                if r["data_gap"]
                else "evaluated"
            )
            print(f"  {label}: {missing or 'all inputs present'} ({state})")
    if args.json is not None:
        _write(args.json, json.dumps(profile.as_json(), indent=2))
    if args.html is not None:
        _write(args.html, render_html(profile))
    return 0
