"""The worklist in the browser: ``mount(app, settings)`` adds it under ``/worklist``.

Server-rendered Jinja2 pages, one small script, no CDN. Sessions are server-side (cookie
HttpOnly, SameSite=Lax, Secure when the public base URL is https); every form carries the
session's CSRF token; pages send a strict Content-Security-Policy and ``no-store``.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from plugin.config import Settings
from plugin.errors import DxSafetyError
from plugin.worklist import saferdx
from plugin.worklist.store import Store
from plugin.worklist.users import Session, User, load_session

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "dxsafety_session"
LOGIN_CSRF_COOKIE = "dxsafety_login_csrf"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """Raised by :meth:`Web.session` when there is no valid session."""


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMeta:
    title: str
    trigger: str | None = None
    published_ppv: float | None = None
    published_n: int | None = None
    citation: str | None = None
    description: str = ""


@dataclass(slots=True, kw_only=True)
class Web:
    """What every worklist route needs: the store, settings and templates."""

    store: Store
    settings: Settings
    env: Environment
    secure: bool
    _rules: dict[str, RuleMeta] | None = field(default=None)

    def rules(self) -> dict[str, RuleMeta]:
        """Rule metadata from ``settings.rules_dir`` (empty if the rules cannot be loaded)."""
        if self._rules is None:
            self._rules = load_rule_meta(self.settings.rules_dir)
        return self._rules

    def session(self, request: Request, *, admin: bool = False) -> Session:
        token = request.cookies.get(SESSION_COOKIE)
        session = load_session(self.store, token) if token else None
        if session is None:
            raise LoginRequired
        if admin and not session.user.is_admin:
            raise Forbidden("This needs the admin role.")
        return session

    async def posted(
        self, request: Request, *, admin: bool = False
    ) -> tuple[Session, dict[str, Any]]:
        """The session (looked up off the event loop) and the CSRF-checked form."""
        session = await run_in_threadpool(lambda: self.session(request, admin=admin))
        return session, await self.form(request, session)

    async def form(self, request: Request, session: Session) -> dict[str, Any]:
        """The posted form, after checking its CSRF token against the session's."""
        data = await request.form()
        token = data.get("csrf_token")
        if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf_token):
            raise Forbidden("The form's security token is missing or stale; reload the page.")
        return {k: data.getlist(k) if k.startswith("multi_") else data.get(k) for k in data}

    def render(
        self, name: str, *, session: Session | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            user=session.user if session else None,
            csrf_token=session.csrf_token if session else "",
            status_labels=saferdx.STATUS_LABELS,
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                            secure=self.secure, path="/")  # fmt: skip


def load_rule_meta(rules_dir: Path) -> dict[str, RuleMeta]:
    try:
        from plugin.rules import load_rules

        ruleset = load_rules(rules_dir)
    except (ImportError, DxSafetyError, OSError) as exc:
        log.warning("worklist: rule metadata unavailable (%s)", exc.__class__.__name__)
        return {}
    meta = {}
    for rule in ruleset.rules:
        published = getattr(rule, "published", None)
        meta[str(rule.id)] = RuleMeta(
            title=rule.title,
            trigger=getattr(rule, "trigger", None),
            published_ppv=getattr(published, "ppv", None),
            published_n=getattr(published, "n", None),
            citation=getattr(published, "citation", None),
            description=getattr(rule, "description", ""),
        )
    return meta


def mount(app: FastAPI, settings: Settings, store: Store | None = None) -> Store:
    """Add the worklist (``/worklist``) and a redirect from ``/`` to ``app``; returns the store."""
    from plugin.worklist import routes_admin, routes_cases

    store = store or Store(settings.database_url)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    web = Web(store=store, settings=settings, env=env,
              secure=settings.public_base_url.startswith("https://"))  # fmt: skip
    app.state.worklist_store = store
    app.state.worklist = web
    app.mount("/worklist/static", StaticFiles(directory=HERE / "static"), name="worklist-static")
    app.include_router(routes_cases.router(web))
    app.include_router(routes_admin.router(web))

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/worklist/login?next={quote(target)}", status_code=303)
        return HTMLResponse("Login required", status_code=401, headers=HEADERS)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        session = await run_in_threadpool(load_session, store, token) if token else None
        return web.render("error.html", session=session, status=403, title="Not allowed",
                          message=exc.message)  # fmt: skip

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/worklist/", status_code=307)

    return store


__all__ = ["Forbidden", "LoginRequired", "User", "Web", "mount"]
