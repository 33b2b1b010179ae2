"""``dxsafety rules lint|test|list|show``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plugin.errors import ExitCode, RuleValidationError, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules", help="lint, test, list and show e-trigger rules")
    rs = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("lint", _lint, "check every rule and value set; every problem with file:line:col"),
        ("test", _test, "run each rule's own test cases"),
        ("list", _list, "table of rules: id, title, status, level, published PPV, window"),
    ):
        q = rs.add_parser(name, help=text)
        q.add_argument("path", nargs="?", default="rules", help="rules directory (default rules/)")
        q.set_defaults(handler=func)
    q = rs.add_parser("show", help="one rule with its value sets expanded")
    q.add_argument("rule_id", help="rule id (UUID) or catalogue id such as SP-1")
    q.add_argument("--rules", default="rules", help="rules directory")
    q.set_defaults(handler=_show)


def _load(path: str):  # type: ignore[no-untyped-def]
    from plugin.rules import load_rules

    try:
        return load_rules(path)
    except RuleValidationError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        fatal(f"{len(exc.problems)} problem(s) in {path}", ExitCode.RULES_INVALID)


def _lint(args: argparse.Namespace) -> int:
    rules = _load(args.path)
    from plugin.rules.loader import find_valueset_dir

    vs_dir = find_valueset_dir(Path(args.path))
    n_vs = len(list(vs_dir.glob("*.yaml"))) if vs_dir else 0
    print(f"{len(rules.rules)} rules and {n_vs} value sets in {args.path}: no problems")
    return 0


def _test(args: argparse.Namespace) -> int:
    from plugin.rules.testing import run_rule_tests

    rules = _load(args.path)
    root = Path(args.path)
    results, problems = run_rule_tests(rules, root if root.is_dir() else root.parent)
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = [r for r in results if r.passed is False]
    todo = [r for r in results if r.passed is None]
    for r in failed:
        print(f"{r.location}: FAIL {r.rule_title} :: {r.name}: {r.message}", file=sys.stderr)
    for r in todo:
        print(f"{r.location}: TODO {r.rule_title} :: {r.name} ({r.findings} finding(s))")
    passed = sum(1 for r in results if r.passed)
    print(
        f"{passed} passed, {len(failed)} failed, {len(todo)} todo, in {len(results)} cases "
        f"of {len(rules.rules)} rules"
    )
    if failed or problems:
        fatal("rule tests failed", ExitCode.RULE_TESTS_FAILED)
    return 0


def _window(rule) -> str:  # type: ignore[no-untyped-def]
    hours = rule.within.total_seconds() / 3600
    return f"{hours:g} h" if hours <= 72 else f"{hours / 24:g} d"


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    rules = _load(args.path)
    table = Table(title=f"{len(rules.rules)} rules in {args.path}")
    for col in ("id", "trigger", "title", "status", "level", "PPV (n)", "window", "citation"):
        table.add_column(col, overflow="fold")
    for r in sorted(rules.rules, key=lambda r: (r.trigger or "", r.title)):
        pub = r.spec.published
        ppv = f"{pub.ppv:.1%} ({pub.n or '?'})" if pub and pub.ppv is not None else "-"
        cite = (pub.citation if pub and pub.citation else None) or r.references[0]
        table.add_row(
            r.id, r.trigger or "", r.title, r.status.value, r.level.name, ppv, _window(r), cite
        )
    Console(width=200).print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    from plugin.rules.loader import find_valueset_dir, load_valuesets
    from plugin.rules.validators import walk_code_refs

    rules = _load(args.rules)
    found = rules.find(args.rule_id)
    if not found:
        fatal(f"no rule {args.rule_id} in {args.rules}", ExitCode.USAGE)
    _, specs, _ = load_valuesets(find_valueset_dir(Path(args.rules)))
    for n, rule in enumerate(found):
        if n:
            print("\n" + "-" * 80 + "\n")
        print(f"# {rule.path}")
        print(Path(rule.path).read_text(encoding="utf-8").rstrip())
        names = dict.fromkeys(
            ref.split(":", 1)[1]
            for _, ref in walk_code_refs(rule.spec.model_dump(mode="json")["logic"])
            if ref.startswith("valueset:")
        )
        for name in names:
            spec = specs[name]
            print(f"\n# value set {name} (version {spec.version}): {spec.title}")
            print(f"# source: {spec.source}")
            print(yaml.safe_dump({"codes": spec.codes, "include": spec.include}, sort_keys=False))
    return 0
