"""The worklist in the browser: ``mount(app, settings, ruleset)`` adds it under ``/worklist``.

Server-rendered Jinja2 pages, one small script, no CDN. Sessions are server-side (cookie
HttpOnly, SameSite=Lax, Secure when the public base URL is https); every form carries the
session's CSRF token; pages send a strict Content-Security-Policy and ``no-store``.

This module only assembles: the dependencies are in :mod:`plugin.worklist.deps`, the routes in
``routes_cases`` (queue, case, review), ``routes_admin`` (dashboard, admin pages) and
``routes_login``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from plugin.config import Settings
from plugin.errors import Forbidden, LoginRequired
from plugin.worklist import routes_admin, routes_cases, routes_login
from plugin.worklist.deps import HEADERS, SESSION_COOKIE, Pages, Worklist
from plugin.worklist.store import Store
from plugin.worklist.users import load_session

if TYPE_CHECKING:
    from plugin.rules import RuleSet

HERE = Path(__file__).parent

__all__ = ["mount"]


def mount(
    app: FastAPI,
    settings: Settings,
    ruleset: RuleSet | None = None,
    *,
    store: Store | None = None,
) -> Store:
    """Add the worklist (``/worklist``) and a redirect from ``/`` to ``app``; returns the store.

    ``ruleset`` is the app's one loaded RuleSet (its titles and published PPVs are shown);
    without it the rules are read from ``settings.rules_dir`` when first needed.
    """
    store = store or Store(settings.database_url)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    pages = Pages(env=env, secure=settings.public_base_url.startswith("https://"))
    app.state.worklist = Worklist.build(store, settings, pages, ruleset)
    app.mount("/worklist/static", StaticFiles(directory=HERE / "static"), name="worklist-static")
    for routes in (routes_cases, routes_admin, routes_login):
        app.include_router(routes.router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_api_route("/", _root, include_in_schema=False)
    return store


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/worklist/login?next={quote(target)}", status_code=303)
    return HTMLResponse("Login required", status_code=401, headers=HEADERS)


async def _forbidden(request: Request, exc: Exception) -> Response:
    worklist: Worklist = request.app.state.worklist
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(load_session, worklist.store, token) if token else None
    message = exc.message if isinstance(exc, Forbidden) else "Not allowed."
    return worklist.pages.render("error.html", session=session, status=403, title="Not allowed",
                                 message=message)  # fmt: skip


def _root() -> RedirectResponse:
    return RedirectResponse("/worklist/", status_code=307)
