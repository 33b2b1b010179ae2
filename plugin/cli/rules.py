"""``dxsafety rules lint|test|list|show``.

Each action loads the catalogue shipped with dxsafety and then the directories named
(positionally or with ``--rules``), as every command does (:mod:`plugin.cli.ruleargs`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from plugin.cli.ruleargs import add_rules_arguments, load_ruleset, print_problems, roots_of
from plugin.errors import ExitCode, RuleProblem, fatal

if TYPE_CHECKING:
    from plugin.rules import Rule, RuleSet
    from plugin.rules.testing import CaseResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules", help="lint, test, list and show e-trigger rules")
    rs = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("lint", _lint, "check every rule and value set; every problem with file:line:col"),
        ("test", _test, "run each rule's own test cases (the named directories', else the "
         "catalogue's)"),
        ("list", _list, "table of rules: id, title, status, level, PPV, window, origin, version"),
    ):  # fmt: skip
        q = rs.add_parser(name, help=text)
        q.add_argument(
            "paths",
            nargs="*",
            type=Path,
            metavar="DIR",
            help="rules directories loaded after the catalogue (the same as --rules DIR)",
        )
        add_rules_arguments(q)
        q.set_defaults(handler=func)
    q = rs.add_parser("show", help="one rule with its value sets expanded")
    q.add_argument("rule_id", help="rule id (UUID) or catalogue id such as SP-1")
    add_rules_arguments(q)
    q.set_defaults(handler=_show, paths=[])


def _lint(args: argparse.Namespace) -> int:
    from plugin.rules.lint import lint_warnings

    rules = load_ruleset(args, extra=args.paths)
    roots = roots_of(args, args.paths)
    warnings = [w for root in roots for w in lint_warnings(root, valuesets=rules.valuesets)]
    print_problems(warnings)
    found = f"{len(warnings)} warning(s)" if warnings else "no problems"
    where = ", ".join(str(r) for r in roots)
    print(f"{len(rules.rules)} rules and {len(rules.valuesets)} value sets in {where}: {found}")
    return 0


def _root_of(rule: Rule) -> Path:
    root = Path(rule.origin)
    return root if root.is_dir() else root.parent


def _test(args: argparse.Namespace) -> int:
    from plugin.rules.testing import run_rule_tests

    rules = load_ruleset(args, extra=args.paths)
    named = {p.resolve() for p in [*args.rules, *args.paths]}
    by_root: dict[Path, list[Rule]] = {}
    for rule in rules.rules:  # fixture folders are found relative to each rule's own root
        root = _root_of(rule)
        if not named or Path(rule.origin).resolve() in named:
            by_root.setdefault(root, []).append(rule)
    results: list[CaseResult] = []
    problems: list[RuleProblem] = []
    for root, group in by_root.items():
        res, probs = run_rule_tests(dataclasses.replace(rules, rules=tuple(group)), root)
        results += res
        problems += probs
    print_problems(problems)
    failed = [r for r in results if r.passed is False]
    todo = [r for r in results if r.passed is None]
    for r in failed:
        print(f"{r.location}: FAIL {r.rule_title} :: {r.name}: {r.message}", file=sys.stderr)
    for r in todo:
        print(f"{r.location}: TODO {r.rule_title} :: {r.name} ({r.findings} finding(s))")
    passed = sum(1 for r in results if r.passed)
    n_rules = sum(len(g) for g in by_root.values())
    print(
        f"{passed} passed, {len(failed)} failed, {len(todo)} todo, in {len(results)} cases "
        f"of {n_rules} rules"
    )
    if failed or problems:
        fatal("rule tests failed", ExitCode.RULE_TESTS_FAILED)
    return 0


def _window(rule: Rule) -> str:
    hours = rule.within.total_seconds() / 3600
    return f"{hours:g} h" if hours <= 72 else f"{hours / 24:g} d"


def origin_labels(rules: RuleSet) -> dict[str, str]:
    """A short label for each root a rule came from: ``catalogue`` for the one shipped with
    dxsafety, ``site-1``, ``site-2``, ... for the others in load order (listed under the
    table with their paths: a path does not fit a table cell)."""
    from plugin.rules.catalogue import is_catalogue

    labels: dict[str, str] = {}
    sites = 0
    for root in dict.fromkeys([*rules.roots, *(r.origin for r in rules.rules)]):
        if is_catalogue(root):
            labels[root] = "catalogue"
        else:
            sites += 1
            labels[root] = f"site-{sites}"
    return labels


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    rules: RuleSet = load_ruleset(args, extra=args.paths)
    origins = origin_labels(rules)
    table = Table(title=f"{len(rules.rules)} rules (catalogue version {rules.catalogue_version})")
    columns = ("id", "trigger", "title", "status", "level", "PPV (n)", "window", "origin",
               "version", "citation")  # fmt: skip
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in sorted(rules.rules, key=lambda r: (r.trigger or "", r.title)):
        pub = r.published
        ppv = f"{pub.ppv:.1%} ({pub.n or '?'})" if pub and pub.ppv is not None else "-"
        cite = (pub.citation if pub and pub.citation else None) or r.references[0]
        table.add_row(r.id, r.trigger or "", r.title, r.status.value, r.level.name, ppv,
                      _window(r), origins[r.origin], r.version, cite)  # fmt: skip
    console = Console(width=240)
    console.print(table)
    for root, label in origins.items():
        console.print(f"{label}: {root}", highlight=False, soft_wrap=True)
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    from plugin.rules.validators import walk_code_refs

    rules = load_ruleset(args)
    origins = origin_labels(rules)
    found = rules.find(args.rule_id)
    if not found:
        fatal(f"no rule {args.rule_id} in the rules loaded", ExitCode.USAGE)
    specs = rules.valueset_specs
    for n, rule in enumerate(found):
        if n:
            print("\n" + "-" * 80 + "\n")
        print(f"# {rule.path} ({origins[rule.origin]}, version {rule.version})")
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
