"""What the CDS service reads from and writes to the worklist database besides findings:
which cases the worklist closed as not a missed opportunity (their cards are suppressed),
which finding each sent card was about (``cds_cards``), and an audit entry per suppressed
card. Small queries over :mod:`plugin.worklist.tables`; the store's own API is used for
everything it offers (the engine, :meth:`Store.audit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from plugin.cds.cards import IssuedCard
from plugin.timeline.model import Finding
from plugin.worklist import tables as t
from plugin.worklist.store import Store, now


def closed_not_missed(engine: sa.Engine, keys: Sequence[str]) -> frozenset[str]:
    """Of ``keys``, the findings whose case is closed and whose final review judged it not
    a missed opportunity (the last review's ``is_mod`` is false)."""
    if not keys:
        return frozenset()
    f, r = t.findings, t.reviews
    last_is_mod = (
        sa.select(r.c.is_mod)
        .where(r.c.finding_id == f.c.id)
        .order_by(r.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = sa.select(f.c.key).where(
        f.c.key.in_(list(keys)), f.c.status == "closed", last_is_mod.is_(False)
    )
    with engine.connect() as conn:
        return frozenset(conn.execute(query).scalars())


def record_cards(store: Store, service_id: str, issued: Sequence[IssuedCard]) -> None:
    if not issued:
        return
    stamp = now()
    rows = [
        {"card_id": c.card_id, "finding_key": c.finding_key, "service_id": service_id,
         "issued_at": stamp}
        for c in issued
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(sa.insert(t.cds_cards), rows)


def audit_suppressed(store: Store, service_id: str, suppressed: Sequence[Finding]) -> None:
    """One audit entry per suppressed card (never patient data: ids, rule, service)."""
    if not suppressed:
        return
    f = t.findings
    with store.engine.begin() as conn:
        rows = conn.execute(
            sa.select(f.c.key, f.c.id).where(f.c.key.in_([x.key for x in suppressed]))
        )
        ids = {row.key: row.id for row in rows}
        for finding in suppressed:
            store.audit(
                conn,
                "cds_card_suppressed",
                finding_id=ids.get(finding.key),
                service=service_id,
                rule=finding.rule_id,
                reason="closed as not a missed opportunity",
            )


def finding_keys(engine: sa.Engine, card_ids: Sequence[str]) -> dict[str, str]:
    """Card uuid -> finding key, for feedback on cards sent since issue 14."""
    c = t.cds_cards
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.c.card_id, c.c.finding_key).where(c.c.card_id.in_(card_ids))
        )
        return {row.card_id: row.finding_key for row in rows}
