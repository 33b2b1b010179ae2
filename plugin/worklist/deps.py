"""FastAPI dependencies of the worklist routes (``Annotated`` aliases keep handlers short).

Everything a route needs lives on one :class:`Worklist` that :func:`plugin.worklist.web.mount`
puts at ``app.state.worklist``; the aliases below hand out its parts (store, settings, pages,
rule metadata) and check the caller (session, admin role, the form's CSRF token). A failed
check raises :class:`LoginRequired` or :class:`Forbidden`, answered by the handlers that
``mount`` installs.

The session lookup is a plain function, so FastAPI runs it in its thread pool; the form is
read on the event loop. Handlers that touch the database are plain functions too.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment

from plugin.config import Settings
from plugin.errors import BadRequest, Forbidden, LoginRequired
from plugin.worklist import saferdx, users
from plugin.worklist.oidc import SignOn
from plugin.worklist.rulemeta import RuleMeta, load_rule_meta, rule_meta
from plugin.worklist.store import Store
from plugin.worklist.users import Session, load_session

if TYPE_CHECKING:
    from plugin.rules import RuleSet

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Pages:
    """The Jinja2 templates, rendered with the headers every worklist page carries."""

    env: Environment
    secure: bool  # cookies get ``Secure`` (the public base URL is https)

    def render(
        self, name: str, *, session: Session | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        admin = bool(session and session.user.is_admin)
        idle = int(users.IDLE_TIMEOUT.total_seconds())  # read now: a site or test may change it
        touch = min(int(users.TOUCH_EVERY.total_seconds()), idle // 4)
        html = self.env.get_template(name).render(
            user=session.user if session else None,
            csrf_token=session.csrf_token if session else "",
            status_labels=saferdx.STATUS_LABELS,
            # reviewers see a second or third review as "in review" (blind review)
            shown=lambda status: saferdx.shown_status(status, admin),
            # the page warns before an idle log-off; the server's clock can lag by TOUCH_EVERY
            idle_seconds=idle,
            warn_seconds=max(1, idle - min(300, idle // 4) - touch),
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                            secure=self.secure, path="/")  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Worklist:
    """What the worklist routes share (``app.state.worklist``).

    ``rules`` is the metadata of the app's one loaded RuleSet. Without one (an app that does
    not load rules), the rules are read from ``settings.rule_roots()`` on first use, and a rules
    tree that cannot be loaded leaves the metadata empty.
    """

    store: Store
    settings: Settings
    pages: Pages
    signon: SignOn | None = None  # OpenID Connect, when configured (issue 15)
    _rules: dict[str, RuleMeta] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls, store: Store, settings: Settings, pages: Pages, ruleset: RuleSet | None
    ) -> Worklist:
        rules = rule_meta(ruleset) if ruleset is not None else None
        signon = SignOn(settings)
        return cls(store=store, settings=settings, pages=pages, _rules=rules,
                   signon=signon if signon.enabled else None)  # fmt: skip

    @property
    def adjudication(self) -> saferdx.Adjudication:
        return saferdx.Adjudication(rule=self.settings.worklist_adjudication,
                                    adjudicator=self.settings.worklist_adjudicator)  # fmt: skip

    def rules(self) -> dict[str, RuleMeta]:
        if self._rules is None:
            with self._lock:
                if self._rules is None:
                    self._rules = load_rule_meta(self.settings.rule_roots())
        return self._rules


def get_worklist(request: Request) -> Worklist:
    worklist: Worklist = request.app.state.worklist
    return worklist


WorklistDep = Annotated[Worklist, Depends(get_worklist)]


def get_store(worklist: WorklistDep) -> Store:
    return worklist.store


def get_settings(worklist: WorklistDep) -> Settings:
    return worklist.settings


def get_pages(worklist: WorklistDep) -> Pages:
    return worklist.pages


def get_rules(worklist: WorklistDep) -> dict[str, RuleMeta]:
    return worklist.rules()


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PagesDep = Annotated[Pages, Depends(get_pages)]
RulesDep = Annotated[dict[str, RuleMeta], Depends(get_rules)]


def current_session(request: Request, store: StoreDep) -> Session:
    """The caller's session; :class:`LoginRequired` without a valid one."""
    token = request.cookies.get(SESSION_COOKIE)
    session = load_session(store, token) if token else None
    if session is None:
        raise LoginRequired
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def admin_session(session: SessionDep) -> Session:
    if not session.user.is_admin:
        raise Forbidden("This needs the admin role.")
    return session


AdminDep = Annotated[Session, Depends(admin_session)]


async def checked_form(request: Request, session: SessionDep) -> dict[str, Any]:
    """The posted form, after checking its CSRF token against the session's."""
    data = await request.form()
    token = data.get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf_token):
        raise Forbidden("The form's security token is missing or stale; reload the page.")
    form = {k: data.getlist(k) if k.startswith("multi_") else data.get(k) for k in data}
    # free-text review fields are checked by the review form itself, which keeps the answers
    if any(_has_nul(k) or (k not in FREE_TEXT and _has_nul(v)) for k, v in form.items()):
        raise BadRequest("The form contains a NUL character, which cannot be stored.")
    return form


FREE_TEXT = frozenset({"notes", "missed_dx"})


def _has_nul(value: object) -> bool:
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return isinstance(value, str) and "\x00" in value


FormDep = Annotated[dict[str, Any], Depends(checked_form)]


async def login_form(request: Request) -> dict[str, str]:
    """The posted login form, after checking its token against the login-page cookie (there
    is no session yet to hold one)."""
    form = await request.form()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get("csrf_token")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise Forbidden("The login form's security token is missing or stale; reload it.")
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    if any(_has_nul(v) for v in fields.values()):
        raise BadRequest("The form contains a NUL character.")
    return fields


LoginFormDep = Annotated[dict[str, str], Depends(login_form)]
