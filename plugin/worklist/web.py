"""The worklist in the browser: ``mount(app, settings, ruleset)`` adds it under ``/worklist``.

Server-rendered Jinja2 pages, one small script, no CDN. Sessions are server-side (cookie
HttpOnly, SameSite=Lax, Secure when the public base URL is https); every form carries the
session's CSRF token; pages send a strict Content-Security-Policy and ``no-store``.

This module only assembles: the dependencies are in :mod:`plugin.worklist.deps`, the routes in
``routes_cases`` (queue, case, review), ``routes_admin`` (dashboard, admin pages) and
``routes_login``.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from plugin.config import Settings
from plugin.errors import BadRequest, Forbidden, LoginRequired, StoreError
from plugin.worklist import (
    cases,
    display,
    routes_admin,
    routes_cases,
    routes_login,
    routes_sampling,
)
from plugin.worklist.deps import HEADERS, SESSION_COOKIE, Pages, Worklist
from plugin.worklist.store import Store
from plugin.worklist.users import Session, lapsed_session, load_session

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
    store = store or Store(settings.database_url, owner_url=settings.database_owner_url)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = lambda value, offset=None: display.local_time(
        value, offset, settings.worklist_timezone)  # fmt: skip
    pages = Pages(env=env, secure=settings.public_base_url.startswith("https://"))
    app.state.worklist = Worklist.build(store, settings, pages, ruleset)
    app.mount("/worklist/static", StaticFiles(directory=HERE / "static"), name="worklist-static")
    for routes in (routes_cases, routes_admin, routes_login, routes_sampling):
        app.include_router(routes.router)
    routes_sampling.install(env, store)  # issue 13: the dashboard's sampled PPV
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadRequest, _bad_request)
    app.middleware("http")(_refuse_nul)
    app.add_api_route("/", _root, include_in_schema=False)
    return store


CASE_POST = re.compile(r"^/worklist/cases/([^/]+)/(review|draft)$")


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/worklist/login?next={quote(target)}", status_code=303)
    kept = CASE_POST.match(request.url.path)
    if kept and await _keep_lapsed_answers(request, kept.group(1)):
        # the session ended while the reviewer was filling in the form: their answers are
        # now their draft, and logging in again brings them back to it
        target = quote(f"/worklist/cases/{kept.group(1)}")
        return RedirectResponse(f"/worklist/login?next={target}&kept=1", status_code=303)
    return HTMLResponse("Login required", status_code=401, headers=HEADERS)


async def _keep_lapsed_answers(request: Request, key: str) -> bool:
    worklist: Worklist = request.app.state.worklist
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return False
    try:
        form = await request.form()
    except Exception:  # an unreadable body (client gone, bad multipart) is not kept
        return False
    session = await run_in_threadpool(lapsed_session, worklist.store, token)
    sent = form.get("csrf_token")
    if (
        session is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent, session.csrf_token)
    ):
        return False
    answers: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    answers["multi_factor"] = [v for v in form.getlist("multi_factor") if isinstance(v, str)]
    finding_id = await run_in_threadpool(cases.find_id, worklist.store, key)
    if finding_id is None:
        return False
    try:
        await run_in_threadpool(cases.save_draft, worklist.store, finding_id, answers,
                                by=session.user)  # fmt: skip
    except StoreError:
        return False
    return True


async def _forbidden(request: Request, exc: Exception) -> Response:
    worklist: Worklist = request.app.state.worklist
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(load_session, worklist.store, token) if token else None
    message = exc.message if isinstance(exc, Forbidden) else "Not allowed."
    if session is not None:  # refusals are audited: probing shows up in the log
        await run_in_threadpool(_audit_refusal, worklist.store, session, request, message)
    return worklist.pages.render("error.html", session=session, status=403, title="Not allowed",
                                 message=message)  # fmt: skip


def _audit_refusal(store: Store, session: Session, request: Request, message: str) -> None:
    with store.engine.begin() as conn:
        store.audit(conn, "access.denied", user_id=session.user.id,
                    username=session.user.username, path=request.url.path[:200],
                    method=request.method, reason=message[:200],
                    address=request.client.host if request.client else None)  # fmt: skip


async def _bad_request(request: Request, exc: Exception) -> Response:
    worklist: Worklist = request.app.state.worklist
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(load_session, worklist.store, token) if token else None
    message = exc.message if isinstance(exc, BadRequest) else "Bad request."
    return worklist.pages.render("error.html", session=session, status=400, title="Bad request",
                                 message=message)  # fmt: skip


async def _refuse_nul(request: Request, call_next: Any) -> Response:
    """A NUL character anywhere in a worklist URL is refused here (PostgreSQL cannot store
    or compare it, and a query with it would fail deep inside a handler)."""
    if request.url.path.startswith("/worklist") and (
        "\x00" in request.url.path
        or "%00" in request.url.query
        or any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items())
    ):
        return HTMLResponse(
            "<!doctype html><title>Bad request</title><p>The address contains a NUL "
            "character.</p>", status_code=400, headers=HEADERS,
        )  # fmt: skip
    response: Response = await call_next(request)
    return response


def _root() -> RedirectResponse:
    return RedirectResponse("/worklist/", status_code=307)
