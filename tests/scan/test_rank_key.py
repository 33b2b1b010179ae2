"""plugin.scan.rank_key: score, then level, then the newest index event first, the same order as
the worklist queue (``score DESC NULLS LAST, level_rank DESC, index_start DESC``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from plugin.scan import rank_key
from plugin.timeline.model import Finding
from plugin.worklist.cases import QueueFilter, queue
from plugin.worklist.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def finding(name: str, start: datetime, *, score: float | None = None, level: str = "high"):
    return Finding(
        key=f"key-{name}",
        patient_id=f"p-{name}",
        rule_id="ed-return",
        rule_title="ED return",
        level=level,
        index_ref=f"Encounter/{name}",
        index_start=start,
        index_end=None,
        window_end=start + timedelta(days=10),
        score=score,
    )


def test_equal_score_and_level_put_the_newest_index_first():
    older = finding("a-older", T0)  # its key sorts first, so only the time can put it second
    newer = finding("b-newer", T0 + timedelta(days=30))
    assert [f.key for f in sorted([older, newer], key=rank_key)] == [newer.key, older.key]
    scored = [finding("a", T0, score=0.4), finding("b", T0 + timedelta(hours=1), score=0.4)]
    assert [f.key for f in sorted(scored, key=rank_key)] == ["key-b", "key-a"]


def test_score_then_level_come_before_time():
    fs = [
        finding("old-high", T0, level="high"),
        finding("new-low", T0 + timedelta(days=9), level="low"),
        finding("old-scored", T0 - timedelta(days=400), score=0.1, level="low"),
        finding("scored", T0, score=0.9, level="low"),
    ]
    got = [f.index_ref for f in sorted(fs, key=rank_key)]
    assert got == [
        "Encounter/scored",
        "Encounter/old-scored",
        "Encounter/old-high",
        "Encounter/new-low",
    ]


def test_the_worklist_queue_orders_findings_as_rank_key_does(tmp_path: Path):
    fs = [
        finding(f"f{i}", T0 + timedelta(days=days), score=score, level=level)
        for i, (days, score, level) in enumerate(
            [
                (0, None, "high"),
                (5, None, "high"),
                (-3, None, "medium"),
                (2, 0.5, "low"),
                (9, 0.5, "low"),
                (1, 0.7, "critical"),
                (-700, None, "high"),
            ]
        )
    ]
    fs.append(finding("pre-epoch", datetime(1960, 1, 1, tzinfo=UTC)))  # a negative timestamp
    store = Store(f"sqlite:///{tmp_path}/worklist.db")
    try:
        store.upsert_findings(fs)
        rows = queue(store, QueueFilter(page_size=50)).rows
    finally:
        store.close()
    assert [r["key"] for r in rows] == [f.key for f in sorted(fs, key=rank_key)]
