"""Security and audit (issue 15, items 10-11): the audit hash chain and
``dxsafety worklist audit verify``, the PostgreSQL owner/application role split, an
owner-only SQLite file, bound parameters kept out of error messages."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from plugin.cli import main
from plugin.worklist import auditchain, cases, tables
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.factories import finding

NO2 = ReviewInput(items=[2] * 13, harm="none", notes="SECRET-NOTE-TEXT")


def _raw(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _tamper(store: Store, sql: str) -> None:
    """Edit the log the way someone with the owner's rights could: lift the guard first."""
    if store.dialect == "sqlite":
        import sqlite3

        path = store.engine.url.database
        assert path
        con = sqlite3.connect(path)
        con.executescript(
            "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS "
            f"audit_log_no_delete; {sql};"
        )
        con.close()
    else:
        with psycopg.connect(_raw(str(store.engine.url.render_as_string(False))),
                             autocommit=True) as conn:  # fmt: skip
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            conn.execute(sql)  # type: ignore[arg-type]
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


def _verify(store: Store) -> int:
    url = store.engine.url.render_as_string(hide_password=False)
    return main(["worklist", "--database-url", url, "audit", "verify"])


def _seed(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    cases.get_case(store, f.key, users["rev1"])
    cases.save_review(store, cases.find_id(store, f.key) or 0, NO2, by=users["rev1"], version=1)


def test_audit_verify_detects_an_edited_row(store: Store, users, capsys) -> None:
    _seed(store, users)
    assert _verify(store) == 0
    assert "audit log intact" in capsys.readouterr().out
    _tamper(store, "UPDATE audit_log SET username = 'mallory' WHERE action = 'review.save'")
    assert _verify(store) == 50
    err = capsys.readouterr().err
    assert "contents were changed" in err and "TAMPERED" in err


def test_audit_verify_detects_a_deleted_row_and_a_cut_tail(store: Store, users) -> None:
    _seed(store, users)
    with store.engine.connect() as conn:
        ids = conn.execute(sa.select(tables.audit_log.c.id).order_by(tables.audit_log.c.id))
        first = ids.scalars().first() or 0
    _tamper(store, f"DELETE FROM audit_log WHERE id = {first + 1}")
    verdict = auditchain.verify(store.engine)
    assert not verdict.ok and "does not follow" in verdict.problems[0]


def test_audit_verify_detects_a_cut_tail(store: Store, users) -> None:
    _seed(store, users)
    with store.engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(tables.audit_log.c.id))).scalar_one()
    _tamper(store, f"DELETE FROM audit_log WHERE id = {last}")
    verdict = auditchain.verify(store.engine)
    assert not verdict.ok and "removed from the end" in verdict.problems[-1]


def test_concurrent_appends_keep_one_unbroken_chain(store: Store, users) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            for i in range(10):
                with store.engine.begin() as conn:
                    store.audit(conn, "test.append", user_id=n, i=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    verdict = auditchain.verify(store.engine)
    assert verdict.ok and verdict.entries == 60, verdict.problems


def test_sqlite_database_file_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store(f"sqlite:///{tmp_path}/sub/w.db")
        store.upsert_findings([finding("p1")])
    finally:
        os.umask(old)
    for name in ("w.db", "w.db-wal", "w.db-shm"):
        path = tmp_path / "sub" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, name
    store.close()


def test_failed_statements_do_not_carry_their_parameters(store: Store) -> None:
    """A database error (here a foreign key violation) names the statement, not the note."""
    with pytest.raises(sa.exc.DBAPIError) as caught, store.engine.begin() as conn:
        conn.execute(tables.reviews.insert().values(
            finding_id=999_999, reviewer_id=999_999, round=1, items=[2] * 13, judgement=2,
            is_mod=False, harm="none", miscoded=False, missed_dx="", notes="SECRET-NOTE-TEXT",
            case_version=1, created_at=sa.func.now()))  # fmt: skip
    assert "SECRET-NOTE-TEXT" not in str(caught.value)
    assert "hidden" in str(caught.value)


@pytest.mark.postgres
def test_application_role_cannot_truncate_or_disable_triggers(pg_base_url: str) -> None:
    admin = _raw(pg_base_url) + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        for role in ("dx_owner", "dx_app"):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                continue
            conn.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
        conn.execute("DROP DATABASE IF EXISTS worklist_roles")
        conn.execute("CREATE DATABASE worklist_roles OWNER dx_owner")
    host = pg_base_url.split("@", 1)[1]
    owner_url = f"postgresql+psycopg://dx_owner@{host}/worklist_roles"
    app_url = f"postgresql+psycopg://dx_app@{host}/worklist_roles"
    store = Store(app_url, owner_url=owner_url)
    try:
        store.upsert_findings([finding("p1")])  # the application works as before
        assert store.count_findings() == 1
        app = _raw(app_url)
        for sql in ("TRUNCATE audit_log", "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                    "ALTER TABLE reviews DISABLE TRIGGER reviews_append_only",
                    "DROP TABLE audit_log", "UPDATE audit_log SET action = 'x'",
                    "DELETE FROM audit_log", "DROP TRIGGER audit_log_append_only ON audit_log",
                    "UPDATE alembic_version SET version_num = '0001'"):  # fmt: skip
            with psycopg.connect(app, autocommit=True) as conn, pytest.raises(psycopg.Error):
                conn.execute(sql)  # type: ignore[arg-type]
        assert auditchain.verify(store.engine).ok
    finally:
        store.close()
