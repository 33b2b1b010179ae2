"""Login and logout."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from plugin.errors import Forbidden, SignOnError
from plugin.worklist import users
from plugin.worklist.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FormDep,
    LoginFormDep,
    PagesDep,
    SessionDep,
    StoreDep,
    WorklistDep,
)
from plugin.worklist.oidc import COOKIE as OIDC_COOKIE
from plugin.worklist.oidc import COOKIE_PATH as OIDC_COOKIE_PATH
from plugin.worklist.oidc import STATE_TTL, role_for

router = APIRouter(prefix="/worklist", tags=["worklist"])


def safe_next(target: str | None) -> str:
    """Only local worklist paths (no open redirect)."""
    if target and target.startswith("/worklist/") and not target.startswith("//"):
        return target
    return "/worklist/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, pages: PagesDep, worklist: WorklistDep) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    target = safe_next(request.query_params.get("next"))
    notice = ("Your session ended because the page was idle. Your review answers were kept "
              "as a draft; log in to continue where you left off."
              if request.query_params.get("kept") else "")  # fmt: skip
    sso = worklist.signon is not None and worklist.signon.enabled
    response = pages.render("login.html", session=None, login_csrf=token, next=target, error="",
                            notice=notice, sso=sso)  # fmt: skip
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=pages.secure, path="/worklist/login", max_age=3600)  # fmt: skip
    return response


@router.post("/login", response_model=None)
def login(
    request: Request, form: LoginFormDep, store: StoreDep, pages: PagesDep, worklist: WorklistDep
) -> Response:
    name, password = form.get("username", ""), form.get("password", "")
    target = safe_next(form.get("next"))

    def again(status: int, error: str) -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        return pages.render("login.html", session=None, status=status, login_csrf=token,
                            next=target, error=error, notice="",
                            sso=bool(worklist.signon and worklist.signon.enabled))  # fmt: skip

    address = request.client.host if request.client else "unknown"
    # the audit log names an account only when it exists: a password typed into the user
    # name field is never written down
    account = users.known_username(store, name)
    if users.throttled(store, name, address):
        with store.engine.begin() as conn:
            store.audit(conn, "login.throttled", username=account, address=address,
                        unknown_account=account is None)  # fmt: skip
        return again(429, "Too many failed attempts from this computer; try again in 15 "
                     "minutes or ask an admin to unlock the account.")  # fmt: skip
    user = users.authenticate(store, name, password)
    if user is None:
        users.record_failure(store, name, address)
    with store.engine.begin() as conn:
        store.audit(conn, "login" if user else "login.failed",
                    user_id=user.id if user else None, username=account, address=address,
                    unknown_account=account is None)  # fmt: skip
    if user is None:
        return again(401, "Wrong user name or password.")
    token, _session = users.open_session(store, user)
    response = RedirectResponse(target, status_code=303)
    pages.set_session_cookie(response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/worklist/login")
    return response


@router.get("/login/oidc", response_model=None)
def sign_on_start(request: Request, worklist: WorklistDep, pages: PagesDep) -> Response:
    """Off to the hospital's identity provider."""
    signon = worklist.signon
    if signon is None or not signon.enabled:
        return pages.render(
            "error.html",
            session=None,
            status=404,
            title="No sign-on",
            message="Sign-on with an identity provider is not configured.",
        )
    try:
        url, cookie = signon.start(safe_next(request.query_params.get("next")))
    except SignOnError as exc:
        return pages.render("login.html", session=None, status=502, login_csrf="", next="",
                            error=str(exc), notice="", sso=True)  # fmt: skip
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(OIDC_COOKIE, cookie, httponly=True, samesite="lax", secure=pages.secure,
                        path=OIDC_COOKIE_PATH, max_age=STATE_TTL)  # fmt: skip
    return response


@router.get("/login/oidc/callback", response_model=None)
def sign_on_finish(
    request: Request, worklist: WorklistDep, store: StoreDep, pages: PagesDep
) -> Response:
    signon = worklist.signon
    address = request.client.host if request.client else "unknown"

    def refuse(status: int, message: str, username: str | None = None) -> Response:
        with store.engine.begin() as conn:
            store.audit(conn, "login.failed", username=username, via="sign-on",
                        reason=message[:200], address=address)  # fmt: skip
        response = pages.render("login.html", session=None, status=status, login_csrf="",
                                next="/worklist/", error=message, notice="",
                                sso=True)  # fmt: skip
        response.delete_cookie(OIDC_COOKIE, path=OIDC_COOKIE_PATH)
        return response

    if signon is None or not signon.enabled:
        return refuse(404, "Sign-on with an identity provider is not configured.")
    try:
        identity, target = signon.finish(dict(request.query_params),
                                         request.cookies.get(OIDC_COOKIE))  # fmt: skip
    except SignOnError as exc:
        return refuse(400, f"Sign-on failed: {exc}")
    role = role_for(identity.groups, worklist.settings)
    if role is None:
        return refuse(403, "Your hospital account has no worklist role (ask for the reviewer "
                      "or admin group).", None)  # fmt: skip
    try:
        user = users.sign_on_user(store, identity.key, identity.username, role)
    except Forbidden as exc:
        return refuse(403, exc.message)
    token, _session = users.open_session(store, user)
    with store.engine.begin() as conn:
        store.audit(conn, "login", user_id=user.id, username=user.username, via="sign-on",
                    address=address)  # fmt: skip
    response = RedirectResponse(safe_next(target), status_code=303)
    pages.set_session_cookie(response, token)
    response.delete_cookie(OIDC_COOKIE, path=OIDC_COOKIE_PATH)
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, session: SessionDep, _form: FormDep, store: StoreDep) -> Response:
    users.close_session(store, request.cookies[SESSION_COOKIE])
    with store.engine.begin() as conn:
        store.audit(conn, "logout", user_id=session.user.id,
                    username=session.user.username)  # fmt: skip
    response = RedirectResponse("/worklist/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
