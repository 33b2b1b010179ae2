"""``dxsafety worklist``: create users, import scan findings, export reviews."""

from __future__ import annotations

import argparse
import getpass
import io
import sys
from pathlib import Path

from plugin.errors import ExitCode, StoreError, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # --database-url is accepted before or after the action (`worklist --database-url X
    # import f.json` and `worklist import f.json --database-url X`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="worklist database (default: DXSAFETY_DATABASE_URL or "
                             "sqlite:///var/dxsafety.db)")  # fmt: skip
    p = sub.add_parser("worklist", parents=[common],
                       help="review worklist: users, import findings, export")  # fmt: skip
    wsub = p.add_subparsers(dest="worklist_command", metavar="ACTION", required=True)

    u = wsub.add_parser("create-user", parents=[common], help="add a reviewer or admin")
    u.add_argument("name")
    u.add_argument("--role", choices=("reviewer", "admin"), required=True)
    u.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file's first line (default: ask)",
    )
    u.set_defaults(handler=create_user)

    i = wsub.add_parser("import", parents=[common],
                        help="import findings from `dxsafety scan --format json`")  # fmt: skip
    i.add_argument("findings", type=Path, help="FINDINGS.json")
    i.add_argument("--batch-size", type=int, default=500, help="findings per transaction")
    i.add_argument("--fhir", type=Path, action="append", metavar="SOURCE",
                   help="the FHIR files the scan read: store each case's timeline for the "
                        "case view (repeatable)")  # fmt: skip
    i.set_defaults(handler=import_findings)

    e = wsub.add_parser("export", parents=[common], help="export reviewed cases")
    e.add_argument("--format", choices=("csv", "detectedissue", "labels"), required=True,
                   help="csv: reviewed cases; detectedissue: FHIR R4 NDJSON; labels: CSV "
                        "for `dxsafety train`")  # fmt: skip
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(handler=export)


def _store(args: argparse.Namespace, batch_size: int = 500):  # type: ignore[no-untyped-def]
    from plugin.config import Settings
    from plugin.worklist.store import Store

    url = getattr(args, "database_url", None) or Settings().database_url
    try:
        return Store(url, batch_size=batch_size)
    except StoreError as exc:
        fatal(str(exc), ExitCode.STORE_FAILED)


def create_user(args: argparse.Namespace) -> int:
    from plugin.worklist.users import create_user as create

    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            fatal(f"cannot read a password from {args.password_file}: {exc}", ExitCode.USAGE)
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            fatal("the passwords differ", ExitCode.USAGE)
    store = _store(args)
    try:
        user = create(store, args.name, password, args.role)
    except StoreError as exc:
        fatal(str(exc), ExitCode.USAGE)
    finally:
        store.close()  # its pooled connections, not left for the garbage collector
    print(f"created {user.role} {user.username}")
    return 0


def import_findings(args: argparse.Namespace) -> int:
    from plugin.worklist.importer import read_findings

    if not args.findings.exists():
        fatal(f"{args.findings}: no such file", ExitCode.INPUT_NOT_FOUND)
    store = _store(args, batch_size=max(1, args.batch_size))
    try:
        findings = list(read_findings(args.findings))
        if args.fhir:
            from plugin.fhir.read import ReadReport
            from plugin.worklist.importer import with_timelines

            missing = [p for p in args.fhir if not p.exists()]
            if missing:
                fatal(f"{missing[0]}: no such file or directory", ExitCode.INPUT_NOT_FOUND)
            report = ReadReport()
            added = sum(store.upsert_findings(batch, timelines)
                        for batch, timelines in with_timelines(findings, args.fhir,
                                                               report=report))  # fmt: skip
            for line in report.summary_lines():
                print(line, file=sys.stderr)
        else:
            added = store.upsert_findings(findings)
        total = store.count_findings()
    except StoreError as exc:
        fatal(str(exc), ExitCode.INPUT_UNREADABLE)
    finally:
        store.close()
    print(f"{len(findings)} findings read, {added} new, {len(findings) - added} already known; "
          f"{total} cases in the worklist")  # fmt: skip
    return 0


def export(args: argparse.Namespace) -> int:
    from plugin.worklist import export as ex

    store = _store(args)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        if args.format == "detectedissue":
            n = ex.write_detectedissues(store, tmp)
        else:
            buf = io.StringIO()
            if args.format == "csv":
                n = ex.write_csv(store, buf)
            else:
                n = ex.write_labels(store, buf, _triggers())
            tmp.write_text(buf.getvalue(), encoding="utf-8", newline="")
    finally:
        store.close()
    tmp.replace(out)
    print(f"{n} reviewed case(s) written to {out}", file=sys.stderr)
    return 0


def _triggers() -> dict[str, str]:
    from plugin.config import Settings
    from plugin.worklist.rulemeta import load_rule_meta

    meta = load_rule_meta(Settings().rule_roots())
    return {rule_id: m.trigger for rule_id, m in meta.items() if m.trigger}
