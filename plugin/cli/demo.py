"""``dxsafety demo``: the main job on the embedded default, end to end.

Synthetic population → LightGBM model (trained once, if missing) → scan with the
rules and the model → ranked worklist in the database → CDS Hooks service and
worklist on 127.0.0.1. Each step is the same subcommand a user would run by hand.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from plugin.errors import ExitCode, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="synthetic population → scan → ranked worklist → service")
    p.add_argument("--workdir", type=Path, default=Path("var/demo"), help="where everything goes")
    p.add_argument("--patients", type=int, default=3000, help="synthetic patients to generate")
    p.add_argument("--seed", type=int, default=7, help="generator seed")
    p.add_argument("--rules", action="append", default=[], metavar="DIR",
                   help="a site's rules directory, loaded after the catalogue (repeatable)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-serve", action="store_true", help="stop after the scan")
    p.set_defaults(handler=run)


def _step(argv: list[str]) -> None:
    from plugin.cli import main

    print(f"$ dxsafety {' '.join(argv)}", file=sys.stderr)
    code = main(argv)
    if code != 0:
        fatal(f"step failed: dxsafety {' '.join(argv)}", ExitCode(code))


def run(args: argparse.Namespace) -> int:
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    data, model = work / "population", work / "model"
    train_data = work / "training"
    db = f"sqlite:///{(work / 'dxsafety.db').resolve()}"
    rules = [arg for root in args.rules for arg in ("--rules", root)]
    seeds = {train_data: args.seed + 1000, data: args.seed}  # train and scan differ
    for folder, seed in seeds.items():
        if not (folder / "labels.csv").exists():
            _step(["synth", "--patients", str(args.patients), "--seed", str(seed),
                   "--out", str(folder)])  # fmt: skip
    if not (model / "MODEL_CARD.md").exists():
        _step(["train", "--data", str(train_data), "--labels", str(train_data / "labels.csv"),
               "--out", str(model), *rules])  # fmt: skip
    _step(["scan", str(data), *rules, "--model", str(model), "--store", db,
           "--top", "15"])  # fmt: skip
    password_file = work / "admin.password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n")
        password_file.chmod(0o600)
        _step(["worklist", "create-user", "admin", "--role", "admin", "--password-file",
               str(password_file), "--database-url", db])  # fmt: skip
    print(f"worklist login: admin / password in {password_file}", file=sys.stderr)
    if args.no_serve:
        return 0
    _step(["serve", "--host", "127.0.0.1", "--port", str(args.port), "--model", str(model),
           *rules, "--database-url", db])  # fmt: skip
    return 0
