"""Users and sessions: argon2id hashes, validation, expiry (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from plugin.errors import StoreError
from plugin.worklist import tables
from plugin.worklist.store import Store, now, utc
from plugin.worklist.users import (
    authenticate,
    close_session,
    create_user,
    load_session,
    open_session,
)


def test_create_and_authenticate(store: Store) -> None:
    user = create_user(store, "zoe", "a good long password", "reviewer")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(tables.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "a good long password" not in stored
    assert authenticate(store, "zoe", "a good long password") == user
    assert authenticate(store, "zoe", "a good long passworD") is None
    assert authenticate(store, "nobody", "a good long password") is None


@pytest.mark.parametrize(
    ("name", "password", "role", "problem"),
    [
        ("zoe", "short", "reviewer", "at least 12"),
        ("zoe", "long enough pw", "root", "role"),
        ("", "long enough pw", "admin", "user name"),
    ],
)
def test_create_user_refuses(store: Store, name, password, role, problem) -> None:
    with pytest.raises(StoreError, match=problem):
        create_user(store, name, password, role)


def test_duplicate_user_refused(store: Store) -> None:
    create_user(store, "zoe", "long enough pw", "admin")
    with pytest.raises(StoreError, match="exists"):
        create_user(store, "zoe", "another long pw", "reviewer")


def test_sessions_store_only_a_hash_and_expire(store: Store) -> None:
    user = create_user(store, "zoe", "long enough pw", "admin")
    token, session = open_session(store, user)
    assert load_session(store, token) == session
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(tables.sessions.c.token_hash)).scalar_one()
    assert stored != token and len(stored) == 64
    with store.engine.begin() as conn:
        conn.execute(tables.sessions.update().values(expires_at=now() - timedelta(seconds=1)))
    assert load_session(store, token) is None
    token2, _ = open_session(store, user)
    close_session(store, token2)
    assert load_session(store, token2) is None


def test_idle_sessions_end(store: Store) -> None:
    user = create_user(store, "zoe", "long enough pw", "admin")
    token, _ = open_session(store, user)
    with store.engine.begin() as conn:
        conn.execute(tables.sessions.update().values(last_seen=now() - timedelta(minutes=29)))
    assert load_session(store, token) is not None  # still active, and touched again
    with store.engine.connect() as conn:
        seen = conn.execute(sa.select(tables.sessions.c.last_seen)).scalar_one()
    assert now() - utc(seen) < timedelta(minutes=1)
    with store.engine.begin() as conn:
        conn.execute(tables.sessions.update().values(last_seen=now() - timedelta(minutes=31)))
    assert load_session(store, token) is None
