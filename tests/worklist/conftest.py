"""Fixtures: every storage/web test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from plugin.config import Settings
from plugin.worklist import tables
from plugin.worklist.store import Store
from plugin.worklist.users import User
from plugin.worklist.web import mount
from tests.worklist.pg import create_database, empty_tables, free_port, postgres_server

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_database(pg_base_url: str) -> str:
    """One database for the session; each test starts from empty tables (see db_url)."""
    return create_database(pg_base_url, "worklist_tests")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/worklist.db"
    url: str = request.getfixturevalue("pg_database")
    empty_tables(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, rules_dir=tmp_path / "no-rules", env="test")


@pytest.fixture
def app(settings: Settings, store: Store) -> FastAPI:
    app = FastAPI()
    mount(app, settings, store=store)
    return app


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One real argon2id hash of PASSWORD, reused (hashing costs ~0.1-0.4 s each)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(PASSWORD)


def add_user(store: Store, name: str, role: str, password_hash: str) -> User:
    """Insert a user with a ready hash (``users.create_user`` is tested on its own)."""
    with store.engine.begin() as conn:
        user_id = conn.execute(
            tables.users.insert()
            .values(username=name, password_hash=password_hash, role=role, active=True,
                    created_at=datetime.now(UTC))
            .returning(tables.users.c.id)
        ).scalar_one()  # fmt: skip
    return User(id=user_id, username=name, role=role)


@pytest.fixture
def users(store: Store, password_hash: str) -> dict[str, User]:
    return {
        "admin": add_user(store, "alice", "admin", password_hash),
        "rev1": add_user(store, "bob", "reviewer", password_hash),
        "rev2": add_user(store, "carol", "reviewer", password_hash),
    }


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    page = client.get("/worklist/login")
    response = client.post(
        "/worklist/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(page.text),
            "next": "/worklist/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def client_for(app: FastAPI, users: dict[str, object]) -> Iterator[object]:
    clients: list[TestClient] = []

    def make(username: str | None) -> TestClient:
        client = TestClient(app)
        clients.append(client)
        if username:
            login(client, username)
        return client

    yield make
    for c in clients:
        c.close()


# --- the browser tests (Debian chromium driven by Playwright; a real uvicorn on loopback) ---
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run scripts/system-deps")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def serve(app: FastAPI, port: int) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1:``port`` in a thread for one test."""
    import threading
    import time

    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(app: FastAPI) -> Iterator[str]:
    from plugin.worklist.routes_cases import dx_suggestions

    # load the rules tree and the ranker's label list now, not inside the first page's timeout
    app.state.worklist.rules()
    dx_suggestions([])
    yield from serve(app, free_port())
