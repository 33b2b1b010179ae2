"""The rules a command loads, chosen the same way by every command, and the one way rule
problems are printed.

Every command that loads rules takes ``--rules DIR`` (repeatable: a site's own rules,
loaded after the catalogue shipped with dxsafety; they add rules and override catalogue
rules with the same id) and ``--no-catalogue`` (load only the ``--rules`` directories).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from plugin.errors import ExitCode, RuleProblem, RuleValidationError, fatal

if TYPE_CHECKING:
    from plugin.rules import RuleSet

RULES_HELP = (
    "a site's rules directory, loaded after the shipped catalogue: adds rules and overrides "
    "catalogue rules with the same id (repeatable)"
)


def add_rules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules", type=Path, action="append", default=[], metavar="DIR", help=RULES_HELP
    )
    parser.add_argument(
        "--no-catalogue",
        action="store_true",
        help="load only the --rules directories, not the catalogue shipped with dxsafety",
    )


def roots_of(args: argparse.Namespace, extra: Iterable[Path] = ()) -> list[Path]:
    """The roots ``args`` name: the catalogue (unless ``--no-catalogue``), then ``--rules``
    and ``extra`` (the ``rules`` subcommands' positional directories)."""
    from plugin.rules.catalogue import rule_roots

    site = [*args.rules, *extra]
    if args.no_catalogue and not site:
        fatal("--no-catalogue needs at least one rules directory", ExitCode.USAGE)
    return rule_roots(site, use_catalogue=not args.no_catalogue)


def load_ruleset(
    args: argparse.Namespace, *, statuses: set[str] | None = None, extra: Iterable[Path] = ()
) -> RuleSet:
    """Load the rules ``args`` name; invalid rules print their problems and stop the command."""
    from plugin.rules import load_rules

    roots = roots_of(args, extra)
    try:
        return load_rules(roots, statuses=statuses)
    except RuleValidationError as exc:
        rules_invalid(exc, roots)


def format_problem(problem: RuleProblem) -> str:
    """``file:line:col: severity[Rxxx] message`` (then the offending lines, if known)."""
    return str(problem)


def print_problems(problems: Iterable[RuleProblem]) -> None:
    for problem in problems:
        print(format_problem(problem), file=sys.stderr)


def rules_invalid(exc: RuleValidationError, roots: Iterable[str | Path]) -> NoReturn:
    """Print every problem of ``exc``, one per line, and stop with ``RULES_INVALID``."""
    print_problems(exc.problems)
    where = ", ".join(str(r) for r in roots)
    fatal(f"{len(exc.problems)} problem(s) in the rules ({where})", ExitCode.RULES_INVALID)
