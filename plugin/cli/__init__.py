"""``dxsafety`` command line. ``main(argv) -> int`` is pure and testable; ``main_cli`` is
the only place that catches :class:`plugin.errors.FatalError` and prints it.

Each subcommand lives in its own module with ``register(subparsers)``; modules are
imported lazily so ``dxsafety rules lint`` does not pay for LightGBM or FastAPI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from plugin.errors import EmptySource, ExitCode, FatalError, RuleValidationError

# subcommand name -> module under plugin.cli that registers it
COMMANDS: dict[str, str] = {
    "scan": "scan",
    "rules": "rules",
    "fetch": "fetch",
    "synth": "synth",
    "train": "train",
    "evaluate": "train",
    "serve": "serve",
    "worklist": "worklist",
    "demo": "demo",
    "measure": "measure",  # issue 16
    "profile": "profile",  # issue 11
}


def version_text() -> str:
    """``dxsafety <distribution version> (catalogue <version>, <where it is>)``."""
    from importlib.metadata import PackageNotFoundError, version

    from plugin.rules import load_rules
    from plugin.rules.catalogue import default_rules_dir

    try:
        dist = version("dxsafety")
    except PackageNotFoundError:  # run from a checkout that was never installed
        dist = "unknown (not installed)"
    where = default_rules_dir()
    try:
        catalogue = load_rules([where]).catalogue_version
    except RuleValidationError as exc:
        catalogue = f"invalid, {len(exc.problems)} problem(s)"
    return f"dxsafety {dist} (rule catalogue {catalogue}, {where})"


class VersionAction(argparse.Action):
    """``--version``: computed only when asked for (it loads the catalogue)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(version_text())
        parser.exit()


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dxsafety",
        description="Find missed and delayed diagnoses in FHIR R4 data with e-trigger rules, "
        "rank them with LightGBM, and serve CDS Hooks cards and a review worklist.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version", action=VersionAction, help="print the version and the catalogue's, and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    modules = [COMMANDS[wanted]] if wanted in COMMANDS else sorted(set(COMMANDS.values()))
    for name in dict.fromkeys(modules):
        importlib.import_module(f"plugin.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    result: int = args.handler(args)
    return result


def main_cli() -> None:
    try:
        code = main()
    except FatalError as exc:
        print(f"dxsafety: error: {exc.message}", file=sys.stderr)
        raise SystemExit(int(exc.exit_code)) from None
    except EmptySource as exc:  # any command given a source with no FHIR in it (issue 11)
        print(f"dxsafety: error: {exc}", file=sys.stderr)
        raise SystemExit(int(ExitCode.INPUT_NOT_FOUND)) from None
    except KeyboardInterrupt:
        print("dxsafety: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code)
