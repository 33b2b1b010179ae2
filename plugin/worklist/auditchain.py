"""Tamper evidence for the audit log: every entry carries ``hash = sha256(prev_hash + entry)``.

Database triggers refuse UPDATE and DELETE on ``audit_log``, but whoever owns the schema can
lift them; the chain makes such an edit visible. Each entry's hash covers the previous entry's
hash, so changing, deleting or re-ordering a row breaks every link after it, and
``audit_head`` holds the newest link so cutting rows off the end shows too. Record the head
hash that ``dxsafety worklist audit verify`` prints somewhere the database owner cannot write
(a ticket, a signed e-mail) to make a wholesale rewrite detectable as well.

Appending takes the ``audit_head`` row lock first, so concurrent writers chain one after
another instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from plugin.worklist import tables as t

GENESIS = "0" * 64


def entry_hash(
    prev: str,
    *,
    at: datetime,
    user_id: int | None,
    username: str | None,
    action: str,
    finding_id: int | None,
    detail: dict[str, Any],
    address: str | None,
) -> str:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    body = json.dumps(
        [moment.astimezone(UTC).isoformat(), user_id, username, action, finding_id, detail,
         address],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str,
    )  # fmt: skip
    return hashlib.sha256((prev + body).encode()).hexdigest()


def append(conn: sa.Connection, values: dict[str, Any]) -> None:
    """Insert one audit entry, chained to the newest one (inside the caller's transaction)."""
    h = t.audit_head
    # UPDATE first: it takes the row lock (PostgreSQL) or the write lock (SQLite) before the
    # newest hash is read, so two writers cannot both chain onto the same entry
    lock = h.update().where(h.c.id == 1).values(last_id=h.c.last_id).returning(h.c.last_hash)
    prev = conn.execute(lock).scalar()
    if prev is None:  # no head row (a database emptied by TRUNCATE): restart from the log
        last = conn.execute(
            sa.select(t.audit_log.c.id, t.audit_log.c.hash).order_by(t.audit_log.c.id.desc())
        ).first()
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(h)
        conn.execute(insert.values(id=1, last_id=last.id if last else 0,
                                   last_hash=last.hash if last and last.hash else GENESIS)
                     .on_conflict_do_nothing(index_elements=["id"]))  # fmt: skip
        prev = conn.execute(lock).scalar_one()
    digest = entry_hash(prev, at=values["at"], user_id=values["user_id"],
                        username=values["username"], action=values["action"],
                        finding_id=values["finding_id"], detail=values["detail"],
                        address=values["address"])  # fmt: skip
    new_id = conn.execute(
        t.audit_log.insert().values(**values, prev_hash=prev, hash=digest)
        .returning(t.audit_log.c.id)
    ).scalar_one()  # fmt: skip
    conn.execute(h.update().where(h.c.id == 1).values(last_id=new_id, last_hash=digest))


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    entries: int
    head: str
    problems: list[str]


def verify(engine: sa.Engine, *, max_problems: int = 20) -> Verdict:
    """Walk the whole log in id order and recompute every link."""
    a = t.audit_log
    problems: list[str] = []
    prev, n, last_id = GENESIS, 0, 0
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=2000).execute(sa.select(a).order_by(a.c.id))
        for row in rows:
            n += 1
            last_id = row.id
            if row.prev_hash != prev:
                problems.append(f"audit entry {row.id}: does not follow the entry before it "
                                "(an entry was deleted, inserted or re-ordered)")  # fmt: skip
            detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail or "{}")
            digest = entry_hash(row.prev_hash or "", at=row.at, user_id=row.user_id,
                                username=row.username, action=row.action,
                                finding_id=row.finding_id, detail=detail,
                                address=row.address)  # fmt: skip
            if digest != row.hash:
                problems.append(f"audit entry {row.id}: its contents were changed "
                                f"(action now {row.action!r})")  # fmt: skip
            prev = row.hash or ""
            if len(problems) >= max_problems:
                break
        head = conn.execute(sa.select(t.audit_head).where(t.audit_head.c.id == 1)).first()
    if (
        head is not None
        and len(problems) < max_problems
        and (head.last_hash != prev or head.last_id != last_id)
    ):
        problems.append(f"the newest entry is {last_id} but the chain head records "
                        f"{head.last_id}: entries were removed from the end")  # fmt: skip
    return Verdict(ok=not problems, entries=n, head=prev, problems=problems)
