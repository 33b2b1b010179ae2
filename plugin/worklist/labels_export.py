"""Training labels from the worklist: reviewed cases only, with how each was selected.

Columns (read by ``dxsafety train``): ``key, patient_id, rule_id, index_ref, index_start,
episode, label, selection, inclusion_prob, weight, reviewed_at, model_version``.

* Only cases with a final judgement are written: an unreviewed finding is *unlabelled*, never
  a negative (issue 13: training every unreviewed finding as "no missed opportunity" taught
  the ranker wrong).
* ``label`` is 1 (missed opportunity) or 0; ``selection`` ranked | random | stratified | cds;
  ``inclusion_prob`` the sample design's probability and ``weight`` = 1 / inclusion_prob,
  both blank for ranked triage and CDS feedback (no design probability exists for them).
* ``episode`` is the key of the case (episode) the finding belongs to, its own key otherwise.
Cells go through :func:`plugin.worklist.csvsafe.safe_cell`.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from typing import Any, TextIO

import sqlalchemy as sa

from plugin.worklist import tables as t
from plugin.worklist.csvsafe import safe_cell
from plugin.worklist.saferdx import final_judgement
from plugin.worklist.store import Store, utc

LABEL_COLUMNS = ("key", "patient_id", "rule_id", "index_ref", "index_start", "episode",
                 "label", "selection", "inclusion_prob", "weight", "reviewed_at",
                 "model_version")  # fmt: skip
DESIGNED = ("random", "stratified")


def label_rows(store: Store) -> list[dict[str, Any]]:
    f, r = t.findings, t.reviews
    with store.engine.connect() as conn:
        reviews = conn.execute(
            sa.select(r.c.finding_id, r.c.is_mod, r.c.created_at).order_by(r.c.id)).all()
        by_case: dict[int, list[Any]] = defaultdict(list)
        for rev in reviews:
            by_case[rev.finding_id].append(rev)
        keys = {i: k for i, k in conn.execute(sa.select(f.c.id, f.c.key))}
        rows = conn.execute(sa.select(f).where(f.c.id.in_(list(by_case))).order_by(f.c.id)).all()
    out = []
    for row in rows:
        m = row._mapping
        revs = by_case[m["id"]]
        verdict = final_judgement([bool(x.is_mod) for x in revs], m["status"])
        if verdict is None:
            continue
        designed = m["selection"] in DESIGNED and m["inclusion_prob"]
        prob = float(m["inclusion_prob"]) if designed else None
        episode = keys.get(m.get("case_id")) if m.get("case_id") else None
        out.append({
            "key": m["key"], "patient_id": m["patient_id"], "rule_id": m["rule_id"],
            "index_ref": m["index_ref"], "index_start": utc(m["index_start"]).isoformat(),  # type: ignore[union-attr]
            "episode": episode or m["key"], "label": int(verdict),
            "selection": m["selection"], "inclusion_prob": prob,
            "weight": None if prob is None else 1 / prob,
            "reviewed_at": utc(revs[-1].created_at).isoformat(),  # type: ignore[union-attr]
            "model_version": m["model_version"] or (m["extra"] or {}).get("model_version"),
        })  # fmt: skip
    return out


def write_labels(store: Store, out: TextIO) -> int:
    """Write the labels CSV; returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(LABEL_COLUMNS)
    rows = label_rows(store)
    for row in rows:
        writer.writerow([safe_cell(row[c]) for c in LABEL_COLUMNS])
    return len(rows)
