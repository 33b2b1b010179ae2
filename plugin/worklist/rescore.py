"""Re-score the open cases with a new model: an audited admin action (issue 13), so a case's
score always says which model produced it and a new model reaches the queue only when someone
decides it should. Closed cases keep the score their reviewers saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa

from plugin.timeline.model import Finding, Timeline
from plugin.worklist import tables as t
from plugin.worklist.store import Store, utc


class Scorer(Protocol):
    @property
    def version(self) -> str: ...

    def score_findings(self, findings: list[Finding], timelines: Mapping[str, Timeline],
                       ) -> list[Finding]: ...  # fmt: skip


def _finding(m: Mapping[str, Any]) -> Finding:
    return Finding(key=m["key"], patient_id=m["patient_id"], rule_id=m["rule_id"],
                   rule_title=m["rule_title"], level=m["level"], index_ref=m["index_ref"],
                   index_start=utc(m["index_start"]), index_end=utc(m["index_end"]),  # type: ignore[arg-type]
                   window_end=utc(m["window_end"]), outcome_ref=m["outcome_ref"],  # type: ignore[arg-type]
                   evidence=tuple(m["evidence"]), summary=m["summary"], score=m["score"],
                   extra=dict(m["extra"]))  # fmt: skip


def open_patients(store: Store) -> set[str]:
    f = t.findings
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(f.c.patient_id).where(f.c.status != "closed"))
                   .scalars())  # fmt: skip


def rescore_open(store: Store, ranker: Scorer, timelines: Mapping[str, Timeline], *,
                 user_id: int | None, username: str) -> tuple[int, int]:  # fmt: skip
    """Score every open case whose patient is in ``timelines``; returns (re-scored, skipped).
    One audit entry records the model version and the counts."""
    f = t.findings
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            sa.select(f).where(f.c.status != "closed").order_by(f.c.id))]  # fmt: skip
    found = [_finding(r) for r in rows if r["patient_id"] in timelines]
    scored = [x for x in ranker.score_findings(found, timelines) if x.score is not None]
    with store.engine.begin() as conn:
        for x in scored:
            conn.execute(f.update().where(f.c.key == x.key).values(
                score=x.score, missed_dx=[list(d) for d in x.missed_dx],
                reasons=list(x.reasons), extra=x.extra, model_version=ranker.version))  # fmt: skip
        Store.audit(conn, "rescore", user_id=user_id, username=username,
                    model_version=ranker.version, rescored=len(scored),
                    skipped=len(rows) - len(scored))  # fmt: skip
    return len(scored), len(rows) - len(scored)
