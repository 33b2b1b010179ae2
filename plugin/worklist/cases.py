"""Cases: the ranked queue, one case with its reviews, assignment, and saving reviews with
optimistic locking (``findings.version``).

Every view and change is written to the audit log in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from plugin.errors import ConflictError, Forbidden, StoreError
from plugin.worklist import tables as t
from plugin.worklist.saferdx import (
    Adjudication,
    ReviewInput,
    after_review,
    final_judgement,
    review_round,
)
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
    search: str | None = None  # patient id (MRN) or case key, from its start
    sort: str = "score"  # see SORTS
    blind: bool = False  # a reviewer's view: second/third review filter as "in review"
    page: int = 1
    page_size: int = PAGE_SIZE


SORTS = {
    "score": "model score, then level, newest index event",
    "index_new": "index event, newest first",
    "index_old": "index event, oldest first",
    "due": "due date, soonest first",
    "patient": "patient",
}


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
    members: list[dict[str, Any]] = field(default_factory=list)  # other findings, episode
    versions: list[dict[str, Any]] = field(default_factory=list)  # kept snapshot versions
    dissents: list[dict[str, Any]] = field(default_factory=list)
    draft: dict[str, Any] | None = None  # the viewer's autosaved answers

    @property
    def final_mod(self) -> bool | None:
        return final_judgement([r["is_mod"] for r in self.reviews], self.finding["status"])


def _conditions(flt: QueueFilter) -> list[sa.ColumnElement[bool]]:
    f = t.findings
    cond: list[sa.ColumnElement[bool]] = []
    if flt.rule:
        cond.append(f.c.rule_id == flt.rule)
    cond.append(f.c.case_id.is_(None))  # one row per case: episode members join their case
    if flt.status == "open":
        # open = not closed, and not a finding no later scan produces that nobody started
        cond.append(f.c.status != "closed")
        cond.append(sa.or_(f.c.gone_at.is_(None), f.c.status != "new"))
    elif flt.status == "in_review" and flt.blind:
        cond.append(f.c.status.in_(("in_review", "second_review", "third_review")))
    elif flt.status:
        cond.append(f.c.status == flt.status)
    if flt.search:
        text = flt.search.strip()
        cond.append(sa.or_(f.c.patient_id == text, f.c.key.startswith(text, autoescape=True),
                           f.c.patient_id.startswith(text, autoescape=True)))  # fmt: skip
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
    ranked = (f.c.score.desc().nulls_last(), f.c.level_rank.desc(), f.c.index_start.desc())
    order = {
        "index_new": (f.c.index_start.desc(),),
        "index_old": (f.c.index_start.asc(),),
        "due": (f.c.due_at.asc().nulls_last(), *ranked),
        "patient": (f.c.patient_id, f.c.index_start),
    }.get(flt.sort, ranked)
    query = (
        sa.select(f.c.id, f.c.key, f.c.rule_id, f.c.rule_title, f.c.level, f.c.score,
                  f.c.summary, f.c.index_start, f.c.status, f.c.missed_dx, f.c.patient_id,
                  f.c.due_at, f.c.gone_at, f.c.changed_since_review,
                  u.c.username.label("assignee"), n_reviews.label("n_reviews"))
        .outerjoin(u, u.c.id == f.c.assignee_id)
        .where(*cond)
        .order_by(*order, f.c.id)
        .limit(flt.page_size)
        .offset((max(flt.page, 1) - 1) * flt.page_size)
    )  # fmt: skip
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(f).where(*cond)).scalar_one()
        rows = [dict(r._mapping) for r in conn.execute(query)]
        members = _episode_rules(conn, [r["id"] for r in rows])
    for row in rows:
        row["index_start"] = utc(row["index_start"])
        row["due_at"] = utc(row["due_at"])
        row["rules"] = [row["rule_title"], *members.get(row["id"], [])]
    return Page(rows=rows, total=int(total), page=flt.page, page_size=flt.page_size)


def _episode_rules(conn: sa.Connection, case_ids: list[int]) -> dict[int, list[str]]:
    """The titles of the other rules that fired in each case's episode."""
    f = t.findings
    found: dict[int, list[str]] = {}
    if case_ids:
        query = (sa.select(f.c.case_id, f.c.rule_title).where(f.c.case_id.in_(case_ids))
                 .order_by(f.c.id))  # fmt: skip
        for case_id, title in conn.execute(query):
            found.setdefault(case_id, []).append(title)
    return found


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
    with store.engine.connect() as conn:
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
        members = [dict(r._mapping) for r in conn.execute(
            sa.select(f.c.id, f.c.key, f.c.rule_id, f.c.rule_title, f.c.level, f.c.index_ref,
                      f.c.index_start, f.c.window_end, f.c.summary, f.c.evidence, f.c.score)
            .where(f.c.case_id == finding["id"]).order_by(f.c.index_start, f.c.id))]  # fmt: skip
        s = t.finding_snapshots
        versions = [dict(r._mapping) for r in conn.execute(
            sa.select(s.c.version, s.c.created_at, s.c.score, s.c.summary)
            .where(s.c.finding_id == finding["id"]).order_by(s.c.version))]  # fmt: skip
        d = t.review_dissents
        dissents = [dict(r._mapping) for r in conn.execute(
            sa.select(d, t.users.c.username.label("reviewer"))
            .join(t.users, t.users.c.id == d.c.reviewer_id)
            .where(d.c.finding_id == finding["id"]).order_by(d.c.id))]  # fmt: skip
        draft = _draft(conn, finding["id"], viewer.id) if viewer is not None else None
    if viewer is not None:
        # its own transaction, whose first statement writes: on SQLite a read transaction
        # that later writes fails at once (not after busy_timeout) if another writer got in
        with store.engine.begin() as conn:
            store.audit(conn, "case.view", user_id=viewer.id, username=viewer.username,
                        finding_id=finding["id"])  # fmt: skip
    return Case(finding=finding, reviews=reviews, assignee=finding.pop("assignee_name"),
                members=members, versions=versions, dissents=dissents,
                draft=draft)  # fmt: skip


def _draft(conn: sa.Connection, finding_id: int, user_id: int) -> dict[str, Any] | None:
    dr = t.review_drafts
    row = conn.execute(sa.select(dr.c.answers).where(dr.c.finding_id == finding_id,
                                                     dr.c.user_id == user_id)).first()  # fmt: skip
    return dict(row.answers) if row is not None else None


def snapshot_version(store: Store, finding_id: int, version: int) -> dict[str, Any] | None:
    """A kept (reviewed) scan version of a case."""
    s = t.finding_snapshots
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(s).where(s.c.finding_id == finding_id,
                                              s.c.version == version)).first()  # fmt: skip
    return dict(row._mapping) if row is not None else None


DRAFT_FIELDS = frozenset({*(f"item{i}" for i in range(1, 14)), "harm", "harm_duration",
                          "miscoded", "missed_dx", "notes", "multi_factor"})  # fmt: skip


def save_draft(store: Store, finding_id: int, answers: dict[str, Any], *, by: User) -> None:
    """Autosave: the reviewer's answers so far (server-side, one draft per case and user).

    Not audited entry by entry (it is saved every few seconds while typing); the review it
    becomes is. Only the form's own fields are kept.
    """
    kept: dict[str, Any] = {
        k: [str(x)[:40] for x in v][:10] if isinstance(v, list) else str(v)[:20_000]
        for k, v in answers.items() if k in DRAFT_FIELDS and v is not None
    }  # fmt: skip
    if any("\x00" in str(v) for v in kept.values()):
        raise StoreError("the answers contain a NUL character")
    dr = t.review_drafts
    stamp = now()
    stmt = store._insert(dr).values(finding_id=finding_id, user_id=by.id, answers=kept,
                                    started_at=stamp, updated_at=stamp)  # fmt: skip
    stmt = stmt.on_conflict_do_update(
        index_elements=["finding_id", "user_id"],
        set_={"answers": stmt.excluded.answers, "updated_at": stmt.excluded.updated_at},
    )
    with store.engine.begin() as conn:
        conn.execute(stmt)


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
    """Assign (or unassign) a case; a new case becomes 'in review'.

    Admins assign anyone. A reviewer may take an unassigned case and give back their own;
    they cannot take over, or unassign, a colleague's case.
    """
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        if not by.is_admin:
            if assignee not in (None, by.id):
                raise Forbidden("Reviewers can assign cases to themselves only.")
            if assignee is None and row.assignee_id != by.id:
                raise Forbidden("Only the assigned reviewer or an admin can unassign a case.")
            if assignee == by.id and row.assignee_id not in (None, by.id):
                raise Forbidden("This case is assigned to a colleague; ask an admin to "
                                "reassign it.")  # fmt: skip
        if assignee is not None:
            found = conn.execute(sa.select(t.users.c.id).where(t.users.c.id == assignee,
                                                               t.users.c.active))  # fmt: skip
            if found.first() is None:
                raise StoreError("no such user")
            if any(r["reviewer_id"] == assignee for r in _reviews(conn, finding_id)) and (
                row.status != "closed"
            ):
                raise StoreError("that reviewer has already reviewed this case; the next "
                                 "review must be by someone else")  # fmt: skip
        status = "in_review" if row.status == "new" and assignee is not None else row.status
        conn.execute(t.findings.update().where(t.findings.c.id == finding_id)
                     .values(assignee_id=assignee, status=status))  # fmt: skip
        store.audit(conn, "case.assign", user_id=by.id, username=by.username,
                    finding_id=finding_id, assignee_id=assignee, status=status)  # fmt: skip


def assign_many(
    store: Store, keys: list[str], assignee: int | None, *, by: User, due: datetime | None = None
) -> int:
    """Admin bulk assignment of open cases, with an optional due date (the version check is
    per case as usual; a case that changed meanwhile, or that the assignee already reviewed,
    is skipped). Returns how many were assigned."""
    if not by.is_admin:
        raise Forbidden("Bulk assignment needs the admin role.")
    f = t.findings
    done = 0
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(f.c.id, f.c.version)
                            .where(f.c.key.in_(keys), f.c.status != "closed")).all()  # fmt: skip
    for row in rows:
        try:
            assign(store, row.id, assignee, by=by, version=row.version)
        except StoreError:
            continue
        done += 1
        if due is not None:
            with store.engine.begin() as conn:
                conn.execute(f.update().where(f.c.id == row.id).values(due_at=due))
                store.audit(conn, "case.due", user_id=by.id, username=by.username,
                            finding_id=row.id, due=due.date().isoformat())  # fmt: skip
    return done


def save_review(
    store: Store,
    finding_id: int,
    review: ReviewInput,
    *,
    by: User,
    version: int,
    rule: Adjudication | None = None,
) -> str:
    """Append a review and move the case on; returns the new status.

    Raises :class:`ConflictError` when the case changed since ``version`` (another review or
    an assignment), :class:`Forbidden` when the case is assigned to someone else (or, under
    the adjudicator rule, a tie-break is not by the adjudicator), and :class:`StoreError`
    when this review is not allowed (case closed, or the same reviewer reviewing twice).
    A case that needs another review is assigned to the next reviewer at once.
    """
    rule = rule or Adjudication()
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        round_ = review_round(row.status)
        if round_ is None:
            raise StoreError("this case is closed; an admin can send it for another review")
        earlier = _reviews(conn, finding_id)
        if any(r["reviewer_id"] == by.id for r in earlier):
            raise StoreError("you have already reviewed this case; another reviewer must do "
                             "the next review")  # fmt: skip
        if row.assignee_id not in (None, by.id):
            raise Forbidden("This case is assigned to a colleague; only they (or whoever an "
                            "admin assigns it to) can review it.")  # fmt: skip
        if (round_ == 3 and rule.rule == "adjudicator" and rule.adjudicator
                and by.username != rule.adjudicator):  # fmt: skip
            raise Forbidden(f"Ties are broken by the adjudicator, {rule.adjudicator}.")
        status = after_review(round_, review.is_mod, [r["is_mod"] for r in earlier])
        f = t.findings
        seen = conn.execute(sa.select(f.c.snapshot_version).where(f.c.id == finding_id))
        draft = t.review_drafts
        started = conn.execute(sa.select(draft.c.started_at).where(
            draft.c.finding_id == finding_id, draft.c.user_id == by.id)).scalar()  # fmt: skip
        conn.execute(f.update().where(f.c.id == finding_id)
                     .values(status=status, assignee_id=None,
                             changed_since_review=False))  # fmt: skip
        review_id = conn.execute(
            t.reviews.insert()
            .values(finding_id=finding_id, reviewer_id=by.id, round=round_,
                    items=list(review.items), judgement=review.judgement,
                    is_mod=review.is_mod, harm=review.harm,
                    harm_duration=review.harm_duration, miscoded=review.miscoded,
                    missed_dx=review.missed_dx, notes=review.notes, case_version=version,
                    snapshot_version=seen.scalar(), started_at=started,
                    factors=list(review.factors) or None, created_at=now())
            .returning(t.reviews.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(draft.delete().where(draft.c.finding_id == finding_id,
                                          draft.c.user_id == by.id))  # fmt: skip
        store.audit(conn, "review.save", user_id=by.id, username=by.username,
                    finding_id=finding_id, review_id=review_id, round=round_,
                    status=status)  # fmt: skip
        if status != "closed":
            _assign_next(store, conn, finding_id, status, rule,
                         {r["reviewer_id"] for r in earlier} | {by.id})  # fmt: skip
    return status


def _assign_next(
    store: Store, conn: sa.Connection, finding_id: int, status: str, rule: Adjudication,
    done: set[int],
) -> None:  # fmt: skip
    """Give a case that needs another review to someone who has not reviewed it: the
    adjudicator for a tie-break under that rule, else the active reviewer (then admin) with
    the fewest open cases. They find it under "My cases"; nobody eligible leaves it
    unassigned for an admin."""
    u, f = t.users, t.findings
    open_load = (
        sa.select(sa.func.count()).where(f.c.assignee_id == u.c.id, f.c.status != "closed")
        .scalar_subquery()
    )  # fmt: skip
    query = (sa.select(u.c.id, u.c.username, u.c.role).where(u.c.active, u.c.id.not_in(done))
             .order_by((u.c.role != "reviewer"), open_load, u.c.id))  # fmt: skip
    candidates = conn.execute(query).all()
    if status == "third_review" and rule.rule == "adjudicator" and rule.adjudicator:
        candidates = [c for c in candidates if c.username == rule.adjudicator]
    if not candidates:
        store.audit(conn, "case.unassigned", finding_id=finding_id, status=status,
                    reason="no eligible reviewer")  # fmt: skip
        return
    chosen = candidates[0]
    conn.execute(f.update().where(f.c.id == finding_id).values(assignee_id=chosen.id))
    store.audit(conn, "case.assign", finding_id=finding_id, assignee_id=chosen.id,
                status=status, automatic=True)  # fmt: skip


def record_dissent(
    store: Store, finding_id: int, review: ReviewInput, *, by: User, version: int
) -> int:
    """Keep a review that lost a save conflict to a case that has since closed: stored as a
    dissent (shown on the case, audited, for an admin to act on), not counted in the
    verdict. Returns its id."""
    with store.engine.begin() as conn:
        exists = conn.execute(sa.select(t.findings.c.id).where(t.findings.c.id == finding_id))
        if exists.first() is None:
            raise StoreError("no such case")
        dissent_id = conn.execute(
            t.review_dissents.insert()
            .values(finding_id=finding_id, reviewer_id=by.id, items=list(review.items),
                    judgement=review.judgement, is_mod=review.is_mod, harm=review.harm,
                    harm_duration=review.harm_duration, miscoded=review.miscoded,
                    missed_dx=review.missed_dx, notes=review.notes, case_version=version,
                    created_at=now())
            .returning(t.review_dissents.c.id)
        ).scalar_one()  # fmt: skip
        dr = t.review_drafts
        conn.execute(dr.delete().where(dr.c.finding_id == finding_id, dr.c.user_id == by.id))
        store.audit(conn, "review.dissent", user_id=by.id, username=by.username,
                    finding_id=finding_id, dissent_id=dissent_id)  # fmt: skip
    return int(dissent_id)


def reopen_for_review(store: Store, finding_id: int, *, by: User, version: int) -> None:
    """Admin: send a closed case to another reviewer (agreement sampling, appeals)."""
    if not by.is_admin:
        raise StoreError("only an admin can reopen a case")
    with store.engine.begin() as conn:
        row = _claim(conn, finding_id, version)
        if row.status != "closed":
            raise StoreError("only closed cases can be sent for another review")
        earlier = _reviews(conn, finding_id)
        status = "second_review" if len(earlier) <= 1 else "third_review"
        conn.execute(t.findings.update().where(t.findings.c.id == finding_id)
                     .values(status=status))  # fmt: skip
        store.audit(conn, "case.reopen", user_id=by.id, username=by.username,
                    finding_id=finding_id, status=status)  # fmt: skip
        _assign_next(store, conn, finding_id, status, Adjudication(),
                     {r["reviewer_id"] for r in earlier})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    user: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." (login.)
    finding_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_entries(
    store: Store, *, limit: int = 200, offset: int = 0, flt: AuditFilter | None = None
) -> list[dict[str, Any]]:
    """Audit entries newest first, filtered and paged (``limit``/``offset``)."""
    a = t.audit_log
    flt = flt or AuditFilter()
    cond: list[sa.ColumnElement[bool]] = []
    if flt.user:
        cond.append(a.c.username == flt.user)
    if flt.action:
        if flt.action.endswith("."):  # a family: "login." is login, login.failed, ...
            cond.append(sa.or_(a.c.action == flt.action[:-1],
                               a.c.action.startswith(flt.action, autoescape=True)))  # fmt: skip
        else:
            cond.append(a.c.action == flt.action)
    if flt.finding_id:
        cond.append(a.c.finding_id == flt.finding_id)
    if flt.since:
        cond.append(a.c.at >= flt.since)
    if flt.until:
        cond.append(a.c.at < flt.until)
    query = sa.select(a).where(*cond).order_by(a.c.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [dict(r._mapping) | {"at": utc(r.at)} for r in conn.execute(query)]


def workload(store: Store) -> list[dict[str, Any]]:
    """Per active user: open cases assigned, reviews in total, median minutes per review
    (from the first autosave to the saved review)."""
    u, f, r = t.users, t.findings, t.reviews
    with store.engine.connect() as conn:
        people = conn.execute(sa.select(u.c.id, u.c.username).where(u.c.active)
                              .order_by(u.c.username)).all()  # fmt: skip
        assigned: dict[int, int] = dict(conn.execute(
            sa.select(f.c.assignee_id, sa.func.count())
            .where(f.c.status != "closed", f.c.assignee_id.is_not(None))
            .group_by(f.c.assignee_id)).all())  # fmt: skip
        spans: dict[int, list[float]] = {}
        done: dict[int, int] = {}
        for rid, started, created in conn.execute(
            sa.select(r.c.reviewer_id, r.c.started_at, r.c.created_at)
        ):
            done[rid] = done.get(rid, 0) + 1
            if started is not None:
                minutes = ((utc(created) or now()) - (utc(started) or now())).total_seconds() / 60
                spans.setdefault(rid, []).append(minutes)
    out = []
    for p in people:
        times = sorted(spans.get(p.id, []))
        median = times[len(times) // 2] if times else None
        out.append({"username": p.username, "open": int(assigned.get(p.id, 0)),
                    "reviews": done.get(p.id, 0), "median_minutes": median})  # fmt: skip
    return out
