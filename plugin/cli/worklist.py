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
    e.add_argument("--format", choices=("csv", "detectedissue", "labels", "reviews",
                                        "reviews-dictionary"), required=True,
                   help="csv: reviewed cases; detectedissue: FHIR R4 NDJSON; labels: CSV "
                        "for `dxsafety train`; reviews: one row per review (items, notes; "
                        "REDCap-ready); reviews-dictionary: its REDCap dictionary")  # fmt: skip
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(handler=export)

    # issue 13: sampling for an honest PPV, and re-scoring as an audited action
    sm = wsub.add_parser("sample", parents=[common],
                         help="set a rule's sampling mode and draw its review sample")
    sm.add_argument("rule_id")
    sm.add_argument("--mode", choices=("random", "stratified"), required=True)
    size = sm.add_mutually_exclusive_group(required=True)
    size.add_argument("--size", type=int, help="cases to draw")
    size.add_argument("--fraction", type=float, help="share of the rule's cases to draw")
    sm.add_argument("--admin", required=True, help="the admin setting it (audited)")
    sm.set_defaults(handler=sample)
    rs = wsub.add_parser("rescore", parents=[common],
                         help="re-score open cases with a model (audited; closed cases keep "
                              "the score their reviewers saw)")  # fmt: skip
    rs.add_argument("--model", type=Path, required=True, metavar="DIR")
    rs.add_argument("--data", type=Path, action="append", required=True, metavar="SOURCE",
                    help="the FHIR files the cases came from (repeatable)")
    rs.add_argument("--admin", required=True, help="the admin doing it (audited)")
    rs.set_defaults(handler=rescore)

    # issue 15: tamper evidence of the audit log
    au = wsub.add_parser("audit", parents=[common], help="audit log: verify its hash chain")
    asub = au.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = asub.add_parser("verify", parents=[common],
                         help="recompute the audit log's hash chain; exit 50 if an entry was "
                              "changed, removed or re-ordered")  # fmt: skip
    av.set_defaults(handler=audit_verify)


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
            elif args.format == "reviews":  # issue 15: one row per review, REDCap-ready
                n = ex.write_reviews(store, buf)
            elif args.format == "reviews-dictionary":
                n = ex.write_review_dictionary(buf)
            else:
                from plugin.worklist.labels_export import write_labels

                n = write_labels(store, buf)  # issue 13: reviewed only, with selection
            tmp.write_text(buf.getvalue(), encoding="utf-8", newline="")
    finally:
        store.close()
    tmp.replace(out)
    print(f"{n} reviewed case(s) written to {out}", file=sys.stderr)
    return 0


def _admin(store, name: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from plugin.worklist import tables as t

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.users.c.id, t.users.c.role, t.users.c.active)
                           .where(t.users.c.username == name)).first()  # fmt: skip
    if row is None or row.role != "admin" or not row.active:
        store.close()
        fatal(f"{name!r} is not an active admin of this worklist", ExitCode.USAGE)
    return row.id


def sample(args: argparse.Namespace) -> int:
    from plugin.errors import SamplingError
    from plugin.worklist import sampling

    store = _store(args)
    try:
        uid = _admin(store, args.admin)
        mode = sampling.Mode(rule_id=args.rule_id, mode=args.mode, size=args.size,
                             fraction=args.fraction)  # fmt: skip
        sampling.set_mode(store, mode, user_id=uid, username=args.admin)
        n = sampling.draw(store, args.rule_id, user_id=uid, username=args.admin)
    except SamplingError as exc:
        fatal(str(exc), ExitCode.USAGE)
    finally:
        store.close()
    print(f"{n} case(s) of {args.rule_id} drawn ({args.mode})", file=sys.stderr)
    return 0


def rescore(args: argparse.Namespace) -> int:
    from plugin.errors import ModelError
    from plugin.fhir.read import ReadReport
    from plugin.fhir.stage import iter_timelines
    from plugin.rank import load_model
    from plugin.worklist.rescore import open_patients, rescore_open

    try:
        ranker = load_model(args.model)
    except ModelError as exc:
        fatal(f"{args.model}: {exc}", ExitCode.MODEL_INVALID)
    store = _store(args)
    try:
        uid = _admin(store, args.admin)
        wanted = open_patients(store)
        report = ReadReport()
        timelines = {tl.patient.id: tl for tl in iter_timelines(args.data, report=report)
                     if tl.patient.id in wanted}  # fmt: skip
        done, skipped = rescore_open(store, ranker, timelines, user_id=uid,
                                     username=args.admin)  # fmt: skip
    finally:
        store.close()
    for line in report.summary_lines():
        print(line, file=sys.stderr)
    print(f"{done} open case(s) re-scored with model {ranker.version}; {skipped} not found in "
          "the data (left as they were)", file=sys.stderr)
    return int(ExitCode.INPUT_UNREADABLE) if report.skipped else 0


def audit_verify(args: argparse.Namespace) -> int:
    from plugin.worklist.auditchain import verify

    store = _store(args)
    try:
        verdict = verify(store.engine)
    finally:
        store.close()
    for problem in verdict.problems:
        print(problem, file=sys.stderr)
    if not verdict.ok:
        print(f"audit log: TAMPERED ({len(verdict.problems)} problem(s) in "
              f"{verdict.entries} entries)", file=sys.stderr)  # fmt: skip
        return int(ExitCode.STORE_FAILED)
    # the head hash, to be recorded outside the database: a later run must reach it again
    print(f"audit log intact: {verdict.entries} entries, head {verdict.head}")
    return 0
