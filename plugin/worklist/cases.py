"""Cases: the ranked queue, one case with its reviews, assignment, and saving reviews with
optimistic locking (``findings.version``).

Every view and change is written to the audit log in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from plugin.errors import ConflictError, StoreError
from plugin.worklist import tables as t
from plugin.worklist.saferdx import ReviewInput, after_review, final_judgement, review_round
from plugin.worklist.store import Store, now, utc
from plugin.worklist.users import User

PAGE_SIZE = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFilter:
    rule: str | None = None
    status: str | None = None  # one status, or "open" for everything not closed
    assignee: int | None = None  # a user id; 0 = unassigned
    level: str | None = None
    since: datetime | None = None  # index event on or after
    until: datetime | None = None  # index event before
    page: int = 1
    page_size: int = PAGE_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    finding: dict[str, Any]
    reviews: list[dict[str, Any]] = field(default_factory=list)
    assignee: str | None = None

    @property
    def final_mod(self) -> bool | None:
        return final_judgement([r["is_mod"] for r in self.reviews], self.finding["status"])


def _conditions(flt: QueueFilter) -> list[sa.ColumnElement[bool]]:
    f = t.findings
    cond: list[sa.ColumnElement[bool]] = []
    if flt.rule:
        cond.append(f.c.rule_id == flt.rule)
    if flt.status == "open":
        cond.append(f.c.status != "closed")
    elif flt.status:
        cond.append(f.c.status == flt.status)
    if flt.assignee == 0:
        cond.append(f.c.assignee_id.is_(None))
    elif flt.assignee is not None:
        cond.append(f.c.assignee_id == flt.assignee)
    if flt.level:
        cond.append(f.c.level == flt.level)
    if flt.since:
        cond.append(f.c.index_start >= flt.since)
    if flt.until:
        cond.append(f.c.index_start < flt.until)
    return cond


def queue(store: Store, flt: QueueFilter) -> Page:
    """Cases best first: model score, then rule level, then the newest index event."""
    f, u = t.findings, t.users
    cond = _conditions(flt)
    n_reviews = sa.select(sa.func.count()).where(t.reviews.c.finding_id == f.c.id).scalar_subquery()
    query = (
        sa.select(f.c.id, f.c.key, f.c.rule_id, f.c.rule_title, f.c.level, f.c.score,
                  f.c.summary, f.c.index_start, f.c.status, f.c.missed_dx,
                  u.c.username.label("assignee"), n_reviews.label("n_reviews"))
        .outerjoin(u, u.c.id == f.c.assignee_id)
        .where(*cond)
        .order_by(f.c.score.desc().nulls_last(), f.c.level_rank.desc(),
                  f.c.index_start.desc(), f.c.id)
        .limit(flt.page_size)
        .offset((max(flt.page, 1) - 1) * flt.page_size)
    )  # fmt: skip
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(f).where(*cond)).scalar_one()
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["index_start"] = utc(row["index_start"])
    return Page(rows=rows, total=int(total), page=flt.page, page_size=flt.page_size)


def rule_choices(store: Store) -> list[tuple[str, str]]:
    f = t.findings
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(f.c.rule_id, sa.func.max(f.c.rule_title))
                            .group_by(f.c.rule_id).order_by(f.c.rule_id))  # fmt: skip
        return [(r[0], r[1]) for r in rows]


def _reviews(conn: sa.Connection, finding_id: int) -> list[dict[str, Any]]:
    r, u = t.reviews, t.users
    query = (
        sa.select(r, u.c.username.label("reviewer"))
        .join(u, u.c.id == r.c.reviewer_id)
        .where(r.c.finding_id == finding_id)
        .order_by(r.c.id)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def find_id(store: Store, key: str) -> int | None:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.findings.c.id).where(t.findings.c.key == key)).first()
    return None if row is None else int(row.id)


def get_case(store: Store, key: str, viewer: User | None = None) -> Case | None:
    """One case with its reviews; a view by a user is audited."""
    f, u = t.findings, t.users
    with store.engine.begin() as conn:
        row = conn.execute(
            sa.select(f, u.c.username.label("assignee_name"))
            .outerjoin(u, u.c.id == f.c.assignee_id)
            .where(f.c.key == key)
        ).first()
        if row is None:
            return None
        finding = dict(row._mapping)
        for col in ("index_start", "index_end", "window_end", "first_seen", "last_seen"):
            finding[col] = utc(finding[col])
        reviews = _reviews(conn, finding["id"])
        if viewer is not None:
            store.audit(conn, "case.view", user_id=viewer.id, username=viewer.username,
                        finding_id=finding["id"])  # fmt: skip
    return Case(finding=finding, reviews=reviews, assignee=finding.pop("assignee_name"))


def _claim(conn: sa.Connection, finding_id: int, version: int) -> Any:
    """Take the case for this transaction if nobody changed it since ``version`` was read.

    The version bump is the transaction's first statement, so the row (PostgreSQL) or the
    database (SQLite) is write-locked before anything is read: two concurrent saves of the
    same version serialise, and the second finds the version moved on.
    """
    f = t.findings
    done = conn.execute(
        f.update()
        .where(f.c.id == finding_id, f.c.version == version)
        .values(version=f.c.version + 1)
    )
    if done.rowcount != 1:
        exists = conn.execute(sa.select(f.c.id).where(f.c.id == finding_id)).first()
        if exists is None:
            raise StoreError("no such case")
        raise ConflictError("the case was changed by someone else since you opened it")
    return conn.execute(
        sa.select(f.c.id, f.c.status, f.c.assignee_id).where(f.c.id == finding_id)
    ).one()


def assign(store: Store, finding_id: int, assignee: int | None, *, by: User, version: int) -> None:
    """Assign (or unassign) a case; a new case becomes 'in review'."""
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        if assignee is not None:
            found = conn.execute(sa.select(t.users.c.id).where(t.users.c.id == assignee))
            if found.first() is None:
                raise StoreError("no such user")
        status = "in_review" if row.status == "new" and assignee is not None else row.status
        conn.execute(t.findings.update().where(t.findings.c.id == finding_id)
                     .values(assignee_id=assignee, status=status))  # fmt: skip
        store.audit(conn, "case.assign", user_id=by.id, username=by.username,
                    finding_id=finding_id, assignee_id=assignee, status=status)  # fmt: skip


def save_review(
    store: Store, finding_id: int, review: ReviewInput, *, by: User, version: int
) -> str:
    """Append a review and move the case on; returns the new status.

    Raises :class:`ConflictError` when the case changed since ``version`` (another review or
    an assignment), and :class:`StoreError` when this review is not allowed (case closed, or
    the same reviewer reviewing twice).
    """
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        round_ = review_round(row.status)
        if round_ is None:
            raise StoreError("this case is closed; an admin can send it for another review")
        earlier = _reviews(conn, finding_id)
        if any(r["reviewer_id"] == by.id for r in earlier):
            raise StoreError("you have already reviewed this case; another reviewer must do "
                             "the next review")  # fmt: skip
        status = after_review(round_, review.is_mod, [r["is_mod"] for r in earlier])
        conn.execute(t.findings.update().where(t.findings.c.id == finding_id)
                     .values(status=status, assignee_id=None))  # fmt: skip
        review_id = conn.execute(
            t.reviews.insert()
            .values(finding_id=finding_id, reviewer_id=by.id, round=round_,
                    items=list(review.items), judgement=review.judgement,
                    is_mod=review.is_mod, harm=review.harm,
                    harm_duration=review.harm_duration, miscoded=review.miscoded,
                    missed_dx=review.missed_dx, notes=review.notes, case_version=version,
                    created_at=now())
            .returning(t.reviews.c.id)
        ).scalar_one()  # fmt: skip
        store.audit(conn, "review.save", user_id=by.id, username=by.username,
                    finding_id=finding_id, review_id=review_id, round=round_,
                    status=status)  # fmt: skip
    return status


def reopen_for_review(store: Store, finding_id: int, *, by: User, version: int) -> None:
    """Admin: send a closed case to another reviewer (agreement sampling, appeals)."""
    if not by.is_admin:
        raise StoreError("only an admin can reopen a case")
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        if row.status != "closed":
            raise StoreError("only closed cases can be sent for another review")
        n = len(_reviews(conn, finding_id))
        status = "second_review" if n <= 1 else "third_review"
        conn.execute(t.findings.update().where(t.findings.c.id == finding_id)
                     .values(status=status))  # fmt: skip
        store.audit(conn, "case.reopen", user_id=by.id, username=by.username,
                    finding_id=finding_id, status=status)  # fmt: skip


def audit_entries(store: Store, *, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    a = t.audit_log
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(a).order_by(a.c.id.desc()).limit(limit).offset(offset))
        return [dict(r._mapping) | {"at": utc(r.at)} for r in rows]
