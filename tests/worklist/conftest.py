"""Fixtures: every storage/web test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.config import Settings
from plugin.worklist.store import Store
from plugin.worklist.users import create_user
from plugin.worklist.web import mount
from tests.worklist.pg import create_database, postgres_server

PASSWORD = "correct horse battery"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/worklist.db"
    base = request.getfixturevalue("pg_base_url")
    return create_database(
        base,
        f"t{next(_counter)}_{request.node.name[:20].lower()}".replace("[", "_")
        .replace("]", "_")
        .replace("-", "_"),
    )


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
    mount(app, settings, store)
    return app


@pytest.fixture
def users(store: Store) -> dict[str, object]:
    return {
        "admin": create_user(store, "alice", PASSWORD, "admin"),
        "rev1": create_user(store, "bob", PASSWORD, "reviewer"),
        "rev2": create_user(store, "carol", PASSWORD, "reviewer"),
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
