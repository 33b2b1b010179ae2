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

The cache has its own connection pool, with commits that do not wait for the disk
(SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL ``synchronous_commit=off`` for these
transactions only): an fsync per hook call cost ~8 ms p50 on SQLite. What that gives up is
the last few entries after a power loss (not a process crash), i.e. a token seen just before
the machine died could be used once more within its lifetime (minutes). The worklist's own
writes keep their full durability.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from plugin.errors import ReplayStoreUnavailable
from plugin.worklist import tables as t
from plugin.worklist.store import Store, make_engine

PURGE_EVERY_S = 60.0


def replay_key(iss: str, jti: str) -> str:
    return hashlib.sha256(f"{iss}\0{jti}".encode()).hexdigest()


def _fast_engine(store: Store) -> sa.Engine:
    url = sa.engine.make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return store.engine  # an in-memory database exists only behind the store's engine
    engine = make_engine(store.url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _no_fsync_per_commit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoint

    return engine


class DbReplayCache:
    """``first_use(iss, jti, until)`` against the ``cds_replay`` table."""

    def __init__(self, store: Callable[[], Store], clock: Callable[[], float] = time.time):
        self._store = store  # lazily: the worklist store opens (and migrates) on first use
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = float("-inf")
        self._engine_obj: sa.Engine | None = None

    def _engine(self) -> sa.Engine:
        with self._lock:
            if self._engine_obj is None:
                self._engine_obj = _fast_engine(self._store())
            return self._engine_obj

    def close(self) -> None:
        """Close the cache's own connection pool (not the store's)."""
        with self._lock:
            engine, self._engine_obj = self._engine_obj, None
        if engine is not None and engine is not self._store().engine:
            engine.dispose()

    def first_use(self, iss: str, jti: str, until: float) -> bool:
        now = self._clock()
        r = t.cds_replay
        try:
            engine = self._engine()
            insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
            row = insert(r).values(key=replay_key(iss, jti), expires_at=until)
            stmt = row.on_conflict_do_update(
                index_elements=["key"],
                set_={"expires_at": row.excluded.expires_at},
                where=r.c.expires_at < now,
            ).returning(r.c.key)
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
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
