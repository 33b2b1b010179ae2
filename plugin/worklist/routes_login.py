"""Login and logout."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from plugin.worklist import users
from plugin.worklist.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FormDep,
    LoginFormDep,
    PagesDep,
    SessionDep,
    StoreDep,
)

router = APIRouter(prefix="/worklist", tags=["worklist"])


def safe_next(target: str | None) -> str:
    """Only local worklist paths (no open redirect)."""
    if target and target.startswith("/worklist/") and not target.startswith("//"):
        return target
    return "/worklist/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, pages: PagesDep) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    target = safe_next(request.query_params.get("next"))
    notice = ("Your session ended because the page was idle. Your review answers were kept "
              "as a draft; log in to continue where you left off."
              if request.query_params.get("kept") else "")  # fmt: skip
    response = pages.render("login.html", session=None, login_csrf=token, next=target, error="",
                            notice=notice)  # fmt: skip
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=pages.secure, path="/worklist/login", max_age=3600)  # fmt: skip
    return response


@router.post("/login", response_model=None)
def login(request: Request, form: LoginFormDep, store: StoreDep, pages: PagesDep) -> Response:
    name, password = form.get("username", ""), form.get("password", "")
    target = safe_next(form.get("next"))

    def again(status: int, error: str) -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        return pages.render("login.html", session=None, status=status, login_csrf=token,
                            next=target, error=error)  # fmt: skip

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


@router.post("/logout", response_model=None)
def logout(request: Request, session: SessionDep, _form: FormDep, store: StoreDep) -> Response:
    users.close_session(store, request.cookies[SESSION_COOKIE])
    with store.engine.begin() as conn:
        store.audit(conn, "logout", user_id=session.user.id,
                    username=session.user.username)  # fmt: skip
    response = RedirectResponse("/worklist/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
