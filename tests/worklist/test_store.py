"""Storage: idempotent writes, migrations, append-only tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from plugin.worklist import cases, tables
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.factories import finding, timeline


def test_upsert_is_idempotent_by_key(store: Store) -> None:
    batch = [finding(f"p{i}") for i in range(7)]
    timelines = {f.patient_id: timeline(f.patient_id) for f in batch}
    assert store.upsert_findings(batch, timelines) == 7
    assert store.upsert_findings(batch, timelines) == 0
    assert store.upsert_findings([*batch[:3], finding("p99")]) == 1
    assert store.count_findings() == 8
    with store.engine.connect() as conn:
        keys = conn.execute(sa.select(tables.findings.c.key)).scalars().all()
    assert sorted(keys) == sorted({f.key for f in batch} | {finding("p99").key})


def test_duplicates_inside_one_batch_count_once(store: Store) -> None:
    one = finding("p1")
    assert store.upsert_findings([one, one, one]) == 1
    assert store.count_findings() == 1


def test_batches_commit_separately(db_url: str) -> None:
    store = Store(db_url, batch_size=2)
    assert store.upsert_findings(finding(f"p{i}") for i in range(5)) == 5
    assert store.count_findings() == 5
    store.close()


def test_rescan_refreshes_scan_fields_and_keeps_workflow(store: Store, users) -> None:
    first = finding("p1", score=0.3)
    store.upsert_findings([first], {"p1": timeline("p1")})
    case_id = cases.find_id(store, first.key)
    assert case_id is not None
    review = ReviewInput(items=[4] * 12 + [6], harm="mild")
    assert cases.save_review(store, case_id, review, by=users["rev1"], version=1) == (
        "second_review"
    )
    # a re-scan with a new model score, no timeline this time
    store.upsert_findings([replace(first, score=0.8, summary="new summary")])
    case = cases.get_case(store, first.key)
    assert case is not None
    assert case.finding["score"] == pytest.approx(0.8)
    assert case.finding["summary"] == "new summary"
    assert case.finding["status"] == "second_review"
    assert case.finding["snapshot"]["events"], "snapshot kept when a re-scan brings none"
    assert len(case.reviews) == 1
    # a re-scan without a model keeps the earlier score and missed diagnoses
    store.upsert_findings([replace(first, score=None, missed_dx=(), reasons=())])
    case = cases.get_case(store, first.key)
    assert case is not None
    assert case.finding["score"] == pytest.approx(0.8)
    assert case.finding["missed_dx"] == [["stroke", 0.61], ["TIA", 0.2]]


def test_a_rescan_with_another_model_keeps_the_stored_score(store: Store) -> None:
    """Issue 13: re-scoring with a new model is the audited ``worklist rescore``, not a side
    effect of a re-scan; the same model on newer data still refreshes the score."""
    first = replace(finding("p1", score=0.3), extra={"model_version": "v0"})
    store.upsert_findings([first])
    other = replace(first, score=0.9, missed_dx=(("TIA", 0.9),), extra={"model_version": "v1"})
    store.upsert_findings([other])
    case = cases.get_case(store, first.key)
    assert case is not None
    assert case.finding["score"] == pytest.approx(0.3)
    assert case.finding["extra"]["model_version"] == "v0"
    assert case.finding["missed_dx"] == [["stroke", 0.61], ["TIA", 0.2]]
    store.upsert_findings([replace(first, score=0.5)])  # v0 again, newer data
    case = cases.get_case(store, first.key)
    assert case is not None and case.finding["score"] == pytest.approx(0.5)


def test_snapshot_marks_abnormal_labs_and_drops_birth_date(store: Store) -> None:
    f = finding("p1")
    store.upsert_findings([f], {"p1": timeline("p1")})
    case = cases.get_case(store, f.key)
    assert case is not None
    snap = case.finding["snapshot"]
    by_source = {e["source"]: e for e in snap["events"]}
    assert by_source["Observation/glu-p1"]["abnormal"] is True
    assert by_source["Observation/na-p1"]["abnormal"] is False
    assert by_source["Encounter/ed-p1"]["setting"] == "ED"
    assert "birth_date" not in snap


def test_feedback_is_idempotent(store: Store) -> None:
    entry = {
        "service_id": "dxsafety-missed-dx",
        "card_id": "card-1",
        "outcome": "overridden",
        "outcome_timestamp": "2024-03-05T15:00:00Z",
        "override_reason": {"reason": {"code": "not-relevant", "display": "Not relevant"}},
        "accepted_suggestions": [],
    }
    assert store.record_feedback(**entry) is True
    assert store.record_feedback(**entry) is False
    assert store.record_feedback(**(entry | {"outcome_timestamp": "2024-03-05T16:00:00Z"}))
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(tables.cds_feedback)).scalar() == 2
        )


def _head() -> str:
    from alembic.script import ScriptDirectory

    from plugin.worklist.store import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_reopening_applies_no_migration_twice(db_url: str) -> None:
    Store(db_url).close()
    again = Store(db_url)
    with again.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head()
    again.close()


def test_an_old_database_is_upgraded_with_its_data(db_url: str) -> None:
    """A database left at revision 0001 (before idle logout) opens, upgrades, keeps its rows."""
    from datetime import timedelta

    from plugin.worklist.store import MIGRATIONS, make_engine, now
    from plugin.worklist.users import User, load_session

    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")  # an empty PostgreSQL test database may be at head
        command.upgrade(cfg, "0001")
        conn.execute(sa.text(
            "INSERT INTO users (id, username, password_hash, role, active, created_at) "
            "VALUES (1, 'old', 'x', 'admin', true, :t)"), {"t": now()})  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) "
            "VALUES (:h, 1, 'c', :t, :e)"),
            {"h": hashlib.sha256(b"tok").hexdigest(), "t": now(),
             "e": now() + timedelta(hours=1)})  # fmt: skip
    engine.dispose()
    store = Store(db_url)
    store.upsert_findings([finding("p1")])
    session = load_session(store, "tok")
    assert session is not None and session.user == User(id=1, username="old", role="admin")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head()
    store.close()


@pytest.mark.parametrize("table", ["reviews", "audit_log"])
def test_append_only_tables_refuse_update_and_delete(store: Store, users, table: str) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    case_id = cases.find_id(store, f.key)
    assert case_id is not None
    cases.save_review(
        store, case_id, ReviewInput(items=[2] * 13, harm="none"), by=users["rev1"], version=1
    )
    for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(sa.text(statement))
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() >= 1
