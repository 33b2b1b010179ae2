"""The jti replay cache shared by every worker process and host: the worklist database.

A token's ``(iss, jti)`` is single use until the token expires (spec best practices: keep
seen jtis for the maximum token lifetime). First use is decided by one atomic statement, a
unique insert that may only overwrite an *expired* row::

    INSERT INTO cds_replay (key, expires_at) VALUES (:key, :until)
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
        WHERE cds_replay.expires_at < :now
    RETURNING key

A row back means first use; none means a live replay. Two workers racing on the same jti
both run that statement and the database lets exactly one of them through (SQLite and
PostgreSQL alike). Expired rows are purged now and then. A database that cannot be reached
refuses the call (:class:`ReplayStoreUnavailable`, 503): never "unchecked, so allowed".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from plugin.errors import ReplayStoreUnavailable
from plugin.worklist import tables as t

PURGE_EVERY_S = 60.0


def replay_key(iss: str, jti: str) -> str:
    return hashlib.sha256(f"{iss}\0{jti}".encode()).hexdigest()


class DbReplayCache:
    """``first_use(iss, jti, until)`` against the ``cds_replay`` table."""

    def __init__(self, engine: Callable[[], sa.Engine], clock: Callable[[], float] = time.time):
        self._engine = engine  # lazily: the worklist store opens (and migrates) on first use
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = float("-inf")

    def first_use(self, iss: str, jti: str, until: float) -> bool:
        now = self._clock()
        r = t.cds_replay
        try:
            engine = self._engine()
            insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)
            row = insert(r).values(key=replay_key(iss, jti), expires_at=until)
            stmt = row.on_conflict_do_update(
                index_elements=["key"],
                set_={"expires_at": row.excluded.expires_at},
                where=r.c.expires_at < now,
            ).returning(r.c.key)
            with engine.begin() as conn:
                first = conn.execute(stmt).first() is not None
            self._purge(engine, now)
        except sa.exc.SQLAlchemyError as exc:
            raise ReplayStoreUnavailable(
                f"jti replay cache unavailable: {type(exc).__name__}"
            ) from exc
        return first

    def _purge(self, engine: sa.Engine, now: float) -> None:
        with self._lock:
            if now - self._last_purge < PURGE_EVERY_S:
                return
            self._last_purge = now
        with engine.begin() as conn:
            conn.execute(sa.delete(t.cds_replay).where(t.cds_replay.c.expires_at < now))
