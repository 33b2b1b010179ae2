"""OpenID Connect sign-on against a real OpenID Provider (panva/oidc-provider under Node,
``tests/oidc/provider.mjs``; install with ``scripts/node-deps``), in headless Chromium and
over plain HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect

from plugin.config import Settings
from plugin.worklist import users as accounts
from plugin.worklist.store import Store
from tests.worklist.conftest import serve
from tests.worklist.pg import free_port
from tests.worklist.test_browser import shot

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID = "dxsafety-worklist"
CLIENT_SECRET = "test-only-client-secret-0123456789abcdef"


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, ports: tuple[int, int]) -> Settings:
    web, idp = ports
    return Settings(database_url=db_url, rules_dir=tmp_path / "no-rules", env="test",
                    public_base_url=f"http://127.0.0.1:{web}",
                    oidc_issuer=f"http://127.0.0.1:{idp}", oidc_client_id=CLIENT_ID,
                    oidc_client_secret=CLIENT_SECRET)  # fmt: skip


@pytest.fixture
def provider(ports: tuple[int, int]) -> Iterator[str]:
    web, idp = ports
    node = shutil.which("node")
    if node is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID Provider is not installed: run scripts/node-deps")
    env = os.environ | {
        "PORT": str(idp),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": f"http://127.0.0.1:{web}/worklist/login/oidc/callback",
    }
    proc = subprocess.Popen(
        [node, "provider.mjs"],
        cwd=OIDC_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"the OpenID Provider did not start: {line!r}"
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def server(app: FastAPI, ports: tuple[int, int], provider: str) -> Iterator[str]:
    yield from serve(app, ports[0])


def sign_on(client: httpx.Client, server: str, login: str) -> httpx.Response:
    """The whole dance over plain HTTP: worklist -> provider login form -> back."""
    form = client.get(f"{server}/worklist/login/oidc?next=/worklist/dashboard")
    assert form.status_code == 200 and "Hospital sign-in" in form.text, form.text
    action = re.search(r'action="([^"]+)"', form.text)
    assert action
    return client.post(
        str(form.url.join(action.group(1))), data={"login": login, "password": "test-password"}
    )


@pytest.mark.browser
def test_sign_on_in_the_browser(browser: Browser, server: str, store: Store, db_url: str):
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{server}/worklist/")
    shot(page, backend, "15-login-with-sign-on")
    page.locator("#sso-login").click()
    expect(page.get_by_role("heading", name="Hospital sign-in")).to_be_visible()
    page.get_by_label("Hospital user name").fill("alice.admin")
    page.get_by_label("Password").fill("test-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server}/worklist/")
    expect(page.locator("header .who")).to_have_text("alice.admin (admin)")
    page.goto(f"{server}/worklist/admin/users")
    expect(page.locator('#accounts tr[data-user="alice.admin"]')).to_contain_text("sign-on")
    shot(page, backend, "15-signed-on-admin")

    # someone the provider knows but who has no worklist group is refused
    page = browser.new_context().new_page()
    page.goto(f"{server}/worklist/login")
    page.locator("#sso-login").click()
    page.get_by_label("Hospital user name").fill("victor.visitor")
    page.get_by_label("Password").fill("test-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".msg.error")).to_contain_text("no worklist role")
    shot(page, backend, "15-sign-on-refused")


def test_roles_come_from_the_provider_and_deactivation_wins(server: str, store: Store, users):
    with httpx.Client(follow_redirects=True, timeout=20) as client:
        landed = sign_on(client, server, "rita.reviewer")
        assert landed.url.path == "/worklist/dashboard" and "rita.reviewer (reviewer)" in (
            landed.text)  # fmt: skip
        assert client.get(f"{server}/worklist/admin/users").status_code == 403
    rita = next(a for a in accounts.list_accounts(store) if a.username == "rita.reviewer")
    assert rita.sso and rita.role == "reviewer"
    # a password can never be used for a sign-on account
    assert accounts.authenticate(store, "rita.reviewer", "!sso") is None
    accounts.set_active(store, rita.id, False, by=users["admin"])
    with httpx.Client(follow_redirects=True, timeout=20) as client:
        refused = sign_on(client, server, "rita.reviewer")
        assert refused.status_code == 403 and "deactivated" in refused.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_a_forged_or_replayed_callback_is_refused(server: str, store: Store) -> None:
    with httpx.Client(follow_redirects=False, timeout=20) as client:
        bare = client.get(f"{server}/worklist/login/oidc/callback?code=abc&state=xyz")
        assert bare.status_code == 400 and "not started here" in bare.text
        start = client.get(f"{server}/worklist/login/oidc")
        assert start.status_code == 303 and "code_challenge=" in start.headers["location"]
        wrong = client.get(f"{server}/worklist/login/oidc/callback?code=abc&state=other")
        assert wrong.status_code == 400 and "state does not match" in wrong.text
        assert "dxsafety_session" not in client.cookies
    failed = [e for e in accounts_audit(store) if e[0] == "login.failed"]
    assert len(failed) == 2


def accounts_audit(store: Store) -> list[tuple[str, str | None]]:
    import sqlalchemy as sa

    from plugin.worklist import tables

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.audit_log.c.action, tables.audit_log.c.username)
                            .order_by(tables.audit_log.c.id)).all()  # fmt: skip
    return [(r.action, r.username) for r in rows]
