"""A worklist filled with cases whose truth is known, and simulated reviews."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from plugin.worklist import tables as t
from plugin.worklist.store import Store, now


def reviewer(store: Store, name: str = "rev", role: str = "reviewer") -> int:
    with store.engine.begin() as conn:
        return int(conn.execute(t.users.insert().values(
            username=name, password_hash="-", role=role, active=True, created_at=now())
            .returning(t.users.c.id)).scalar_one())  # fmt: skip


def review(store: Store, keys: Mapping[str, bool], user_id: int) -> None:
    """One review per case (``True`` = missed opportunity), then close the case."""
    f, r = t.findings, t.reviews
    with store.engine.begin() as conn:
        ids = {k: i for k, i in conn.execute(
            sa.select(f.c.key, f.c.id).where(f.c.key.in_(list(keys))))}  # fmt: skip
        for key, is_mod in keys.items():
            conn.execute(r.insert().values(
                finding_id=ids[key], reviewer_id=user_id, round=1, items=[6 if is_mod else 2] * 13,
                judgement=6 if is_mod else 2, is_mod=is_mod, harm="moderate" if is_mod else "none",
                miscoded=False, missed_dx="stroke" if is_mod else "", notes="", case_version=1,
                created_at=now()))  # fmt: skip
            conn.execute(f.update().where(f.c.id == ids[key]).values(status="closed"))


def selection_of(store: Store) -> dict[str, tuple[str, float | None]]:
    f = t.findings
    with store.engine.connect() as conn:
        return {row.key: (row.selection, row.inclusion_prob)
                for row in conn.execute(sa.select(f.c.key, f.c.selection, f.c.inclusion_prob))}
