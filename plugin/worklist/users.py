"""Users (argon2id password hashes) and server-side sessions (only a hash of the token is
stored; the CSRF token lives with the session)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from plugin.errors import Forbidden, StoreError
from plugin.worklist import tables as t
from plugin.worklist.passwords import check_password
from plugin.worklist.store import Store, now, utc

ROLES = ("reviewer", "admin")
SESSION_LIFETIME = timedelta(hours=12)  # absolute
IDLE_TIMEOUT = timedelta(minutes=30)  # automatic log-off of an unattended workstation
TOUCH_EVERY = timedelta(seconds=60)  # write last_seen at most this often
LOCKOUT_FAILURES = 5  # failed logins for one user name within LOCKOUT_WINDOW lock it that long
LOCKOUT_WINDOW = timedelta(minutes=15)
ADDRESS_FAILURES = 50  # failed logins from one address (any user names) within the window
SSO_ONLY = "!sso"  # password_hash of an account that signs in only through OpenID Connect
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


def create_user(
    store: Store,
    username: str,
    password: str,
    role: str,
    *,
    by: User | None = None,
    blocklist: Path | None = None,
) -> User:
    """Add a local account. ``by`` is the admin doing it (None: the command line), recorded
    as the audit entry's actor; the password must pass :func:`passwords.check_password`."""
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > 80 or not username.isprintable():
        raise StoreError("user name must be 1-80 printable characters")
    check_password(password, username=username, blocklist=blocklist)
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
        store.audit(conn, "user.create", user_id=by.id if by else None,
                    username=by.username if by else None, new_user_id=user_id,
                    new_username=username, role=role,
                    via="web" if by else "command line")  # fmt: skip
    return User(id=user_id, username=username, role=role)


def sign_on_user(store: Store, subject: str, username: str, role: str) -> User:
    """The account of an identity-provider user (``subject`` = ``issuer|sub``), created on
    first sign-on and given the role the provider's groups map to each time. A deactivated
    account stays deactivated. The user name is the provider's, made unique if a local
    account already has it (so nobody takes over a local account by name)."""
    u = t.users
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(u).where(u.c.oidc_subject == subject)).first()
        if row is not None:
            if not row.active:
                raise Forbidden("This account has been deactivated in the worklist.")
            if row.role != role:
                conn.execute(u.update().where(u.c.id == row.id).values(role=role))
                store.audit(conn, "user.role_from_sign_on", user_id=row.id,
                            username=row.username, old_role=row.role, role=role)  # fmt: skip
            return User(id=row.id, username=row.username, role=role)
        name, n = username, 1
        while conn.execute(sa.select(u.c.id).where(u.c.username == name)).first() is not None:
            n += 1
            name = f"{username[:70]}~{n}"
        user_id = conn.execute(
            u.insert().values(username=name, password_hash=SSO_ONLY, role=role, active=True,
                              created_at=now(), oidc_subject=subject)
            .returning(u.c.id)
        ).scalar_one()  # fmt: skip
        store.audit(conn, "user.create", user_id=user_id, username=name, new_user_id=user_id,
                    new_username=name, role=role, via="sign-on")  # fmt: skip
    return User(id=user_id, username=name, role=role)


# --- account lifecycle (admin) ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    role: str
    active: bool
    sessions: int
    throttled: bool
    sso: bool


def list_accounts(store: Store) -> list[Account]:
    """Every account, active or not, with its open sessions and whether it is throttled."""
    u, s, lf = t.users, t.sessions, t.login_failures
    since = now() - LOCKOUT_WINDOW
    open_sessions = (sa.select(sa.func.count()).where(s.c.user_id == u.c.id,
                                                      s.c.expires_at > now())
                     .scalar_subquery())  # fmt: skip
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(u.c.id, u.c.username, u.c.role, u.c.active,
                                      u.c.password_hash, open_sessions.label("n"))
                            .order_by(u.c.username)).all()  # fmt: skip
        failing: dict[str, int] = dict(conn.execute(
            sa.select(lf.c.account_hash, sa.func.count()).where(lf.c.at >= since)
            .group_by(lf.c.account_hash)).all())  # fmt: skip
    return [Account(id=r.id, username=r.username, role=r.role, active=bool(r.active),
                    sessions=int(r.n),
                    throttled=failing.get(_account_hash(r.username), 0) >= LOCKOUT_FAILURES,
                    sso=r.password_hash == SSO_ONLY) for r in rows]  # fmt: skip


def _account(conn: sa.Connection, user_id: int) -> Any:
    row = conn.execute(sa.select(t.users).where(t.users.c.id == user_id)).first()
    if row is None:
        raise StoreError("no such user")
    return row


def set_active(store: Store, user_id: int, active: bool, *, by: User) -> None:
    """Deactivate (sessions end at once; reviews and audit entries stay) or reactivate."""
    if user_id == by.id and not active:
        raise StoreError("you cannot deactivate your own account")
    with store.engine.begin() as conn:
        row = _account(conn, user_id)
        conn.execute(t.users.update().where(t.users.c.id == user_id).values(active=active))
        if not active:
            conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user_id))
            conn.execute(t.findings.update().where(t.findings.c.assignee_id == user_id,
                                                   t.findings.c.status != "closed")
                         .values(assignee_id=None, version=t.findings.c.version + 1))  # fmt: skip
        store.audit(conn, "user.activate" if active else "user.deactivate", user_id=by.id,
                    username=by.username, target_user_id=user_id,
                    target_username=row.username)  # fmt: skip


def reset_password(
    store: Store, user_id: int, password: str, *, by: User, blocklist: Path | None = None
) -> None:
    """Set a new password (policy-checked); the account's sessions end and it is unlocked."""
    with store.engine.begin() as conn:
        row = _account(conn, user_id)
        check_password(password, username=row.username, blocklist=blocklist)
        conn.execute(t.users.update().where(t.users.c.id == user_id)
                     .values(password_hash=_hasher.hash(password)))  # fmt: skip
        conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user_id))
        conn.execute(t.login_failures.delete().where(
            t.login_failures.c.account_hash == _account_hash(row.username)))  # fmt: skip
        store.audit(conn, "user.reset_password", user_id=by.id, username=by.username,
                    target_user_id=user_id, target_username=row.username)  # fmt: skip


def unlock(store: Store, user_id: int, *, by: User) -> None:
    """Forget the account's recent failed logins (from every address)."""
    with store.engine.begin() as conn:
        row = _account(conn, user_id)
        conn.execute(t.login_failures.delete().where(
            t.login_failures.c.account_hash == _account_hash(row.username)))  # fmt: skip
        store.audit(conn, "user.unlock", user_id=by.id, username=by.username,
                    target_user_id=user_id, target_username=row.username)  # fmt: skip


def revoke_sessions(store: Store, user_id: int, *, by: User) -> int:
    """End every session of the account (a lost laptop); returns how many ended."""
    with store.engine.begin() as conn:
        row = _account(conn, user_id)
        ended = conn.execute(t.sessions.delete().where(t.sessions.c.user_id == user_id))
        store.audit(conn, "user.revoke_sessions", user_id=by.id, username=by.username,
                    target_user_id=user_id, target_username=row.username,
                    ended=ended.rowcount)  # fmt: skip
    return int(ended.rowcount)


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


def lapsed_session(store: Store, token: str) -> Session | None:
    """A session that ended only because it sat idle (not expired, not closed, user still
    active): lets a form posted just after an idle log-off be kept as that user's draft."""
    s, u = t.sessions, t.users
    query = (
        sa.select(s.c.csrf_token, s.c.expires_at, u.c.id, u.c.username, u.c.role)
        .join(u, u.c.id == s.c.user_id)
        .where(s.c.token_hash == _token_hash(token), u.c.active)
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or (utc(row.expires_at) or now()) < now():
        return None
    return Session(User(id=row.id, username=row.username, role=row.role), row.csrf_token)


def close_session(store: Store, token: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(t.sessions.delete().where(t.sessions.c.token_hash == _token_hash(token)))


def _account_hash(username: str) -> str:
    return hashlib.sha256(b"account\x00" + username.lower()[:200].encode()).hexdigest()


def _pair_hash(username: str, address: str) -> str:
    text = f"{username.lower()[:200]}\x00{address}"
    return hashlib.sha256(b"pair\x00" + text.encode()).hexdigest()


def _address_hash(address: str) -> str:
    return hashlib.sha256(b"address\x00" + address.encode()).hexdigest()


def throttled(store: Store, username: str, address: str) -> bool:
    """Too many recent failed logins for this user name *from this address*, or from this
    address overall (password spraying). Per account and address, so nobody can lock
    someone else out by failing on purpose from elsewhere."""
    lf = t.login_failures
    since = now() - LOCKOUT_WINDOW
    with store.engine.connect() as conn:
        pair = conn.execute(
            sa.select(sa.func.count()).where(
                lf.c.pair_hash == _pair_hash(username, address), lf.c.at >= since
            )
        ).scalar_one()
        spray = conn.execute(
            sa.select(sa.func.count()).where(
                lf.c.pair_hash == _address_hash(address), lf.c.at >= since
            )
        ).scalar_one()
    return int(pair) >= LOCKOUT_FAILURES or int(spray) >= ADDRESS_FAILURES


def record_failure(store: Store, username: str, address: str) -> None:
    """Count a failed login. Only hashes are kept, and only for the throttling window: a
    password typed into the user-name field is not kept anywhere readable."""
    lf = t.login_failures
    stamp = now()
    with store.engine.begin() as conn:
        conn.execute(lf.delete().where(lf.c.at < stamp - LOCKOUT_WINDOW))
        conn.execute(lf.insert(), [
            {"pair_hash": _pair_hash(username, address),
             "account_hash": _account_hash(username), "at": stamp},
            {"pair_hash": _address_hash(address), "account_hash": "-", "at": stamp},
        ])  # fmt: skip


def known_username(store: Store, username: str) -> str | None:
    """The name as stored, when such an account exists (audit entries name real accounts
    only; whatever else was typed is not recorded)."""
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(t.users.c.username)
                             .where(t.users.c.username == username[:80])).scalar()  # fmt: skip
    return str(found) if found is not None else None
