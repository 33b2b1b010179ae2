"""Users (argon2id password hashes) and server-side sessions (only a hash of the token is
stored; the CSRF token lives with the session)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from plugin.errors import StoreError
from plugin.worklist import tables as t
from plugin.worklist.store import Store, now, utc

ROLES = ("reviewer", "admin")
SESSION_LIFETIME = timedelta(hours=12)  # absolute
IDLE_TIMEOUT = timedelta(minutes=30)  # automatic log-off of an unattended workstation
TOUCH_EVERY = timedelta(seconds=60)  # write last_seen at most this often
LOCKOUT_FAILURES = 5  # failed logins for one user name within LOCKOUT_WINDOW lock it that long
LOCKOUT_WINDOW = timedelta(minutes=15)
_hasher = PasswordHasher()  # argon2id with the library's current (RFC 9106 low-memory) defaults
# verified when the user does not exist, so a wrong name costs the same time as a wrong password
_DUMMY_HASH = _hasher.hash("not a password")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(store: Store, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 80 or not username.isprintable():
        raise StoreError("user name must be 1-80 printable characters")
    if len(password) < 10:
        raise StoreError("password must have at least 10 characters")
    with store.engine.begin() as conn:
        exists = conn.execute(sa.select(t.users.c.id).where(t.users.c.username == username))
        if exists.first() is not None:
            raise StoreError(f"user {username!r} exists")
        user_id = conn.execute(
            t.users.insert()
            .values(username=username, password_hash=_hasher.hash(password), role=role,
                    active=True, created_at=now())
            .returning(t.users.c.id)
        ).scalar_one()  # fmt: skip
        store.audit(conn, "user.create", user_id=user_id, username=username, role=role)
    return User(id=user_id, username=username, role=role)


def list_users(store: Store) -> list[User]:
    u = t.users
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(u.c.id, u.c.username, u.c.role).where(u.c.active)
                            .order_by(u.c.username))  # fmt: skip
        return [User(id=r.id, username=r.username, role=r.role) for r in rows]


def authenticate(store: Store, username: str, password: str) -> User | None:
    u = t.users
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(u.c.id, u.c.username, u.c.role, u.c.password_hash).where(
                u.c.username == username, u.c.active
            )
        ).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        with store.engine.begin() as conn:
            conn.execute(u.update().where(u.c.id == row.id)
                         .values(password_hash=_hasher.hash(password)))  # fmt: skip
    return User(id=row.id, username=row.username, role=row.role)


def open_session(store: Store, user: User) -> tuple[str, Session]:
    """A new session; returns the cookie token (shown once) and the session."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    started = now()
    with store.engine.begin() as conn:
        conn.execute(t.sessions.delete().where(t.sessions.c.expires_at < started))
        conn.execute(
            t.sessions.insert().values(token_hash=_token_hash(token), user_id=user.id,
                                       csrf_token=csrf, created_at=started,
                                       expires_at=started + SESSION_LIFETIME,
                                       last_seen=started)
        )  # fmt: skip
    return token, Session(user=user, csrf_token=csrf)


def load_session(store: Store, token: str) -> Session | None:
    s, u = t.sessions, t.users
    token_hash = _token_hash(token)
    query = (
        sa.select(s.c.csrf_token, s.c.expires_at, s.c.last_seen, s.c.created_at, u.c.id,
                  u.c.username, u.c.role)
        .join(u, u.c.id == s.c.user_id)
        .where(s.c.token_hash == token_hash, u.c.active)
    )  # fmt: skip
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    moment = now()
    if row is None or (utc(row.expires_at) or moment) < moment:
        return None
    last = utc(row.last_seen) or utc(row.created_at) or moment
    if moment - last > IDLE_TIMEOUT:
        return None
    if moment - last > TOUCH_EVERY:
        with store.engine.begin() as conn:
            conn.execute(s.update().where(s.c.token_hash == token_hash).values(last_seen=moment))
    return Session(User(id=row.id, username=row.username, role=row.role), row.csrf_token)


def close_session(store: Store, token: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(t.sessions.delete().where(t.sessions.c.token_hash == _token_hash(token)))


def locked_out(store: Store, username: str) -> bool:
    """Too many failed logins for this user name recently (counted from the audit log)."""
    a = t.audit_log
    since = now() - LOCKOUT_WINDOW
    query = sa.select(sa.func.count()).where(
        a.c.action == "login.failed", a.c.username == username[:80], a.c.at >= since
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one()) >= LOCKOUT_FAILURES
