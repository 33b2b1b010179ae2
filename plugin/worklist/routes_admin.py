"""Login and logout, the dashboard, and admin pages (users, audit log, exports)."""

from __future__ import annotations

import hmac
import io
import secrets
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from plugin.errors import StoreError
from plugin.worklist import cases, export, stats, users
from plugin.worklist.charts import ppv_svg
from plugin.worklist.users import Session
from plugin.worklist.web import HEADERS, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Forbidden, Web

EXPORTS = {
    "csv": ("text/csv", "reviewed-cases.csv"),
    "detectedissue": ("application/fhir+ndjson", "detectedissues.ndjson"),
    "labels": ("text/csv", "labels.csv"),
}


def _safe_next(target: str | None) -> str:
    """Only local worklist paths (no open redirect)."""
    if target and target.startswith("/worklist/") and not target.startswith("//"):
        return target
    return "/worklist/"


def export_bytes(web: Web, fmt: str) -> bytes:
    if fmt == "detectedissue":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.ndjson"
            export.write_detectedissues(web.store, path)
            return path.read_bytes()
    buf = io.StringIO()
    if fmt == "csv":
        export.write_csv(web.store, buf)
    else:
        triggers = {k: m.trigger for k, m in web.rules().items() if m.trigger}
        export.write_labels(web.store, buf, triggers)
    return buf.getvalue().encode()


def router(web: Web) -> APIRouter:
    api = APIRouter(prefix="/worklist", tags=["worklist"])

    @api.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        target = _safe_next(request.query_params.get("next"))
        response = web.render("login.html", session=None, login_csrf=token, next=target,
                              error="")  # fmt: skip
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=web.secure, path="/worklist/login", max_age=3600)  # fmt: skip
        return response

    @api.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        form = await request.form()
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        sent = form.get("csrf_token")
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
            raise Forbidden("The login form's security token is missing or stale; reload it.")
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        return await run_in_threadpool(do_login, fields, cookie)

    def do_login(form: dict[str, str], cookie: str) -> Response:
        name, password = str(form.get("username") or ""), str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or ""))
        if users.locked_out(web.store, name):
            with web.store.engine.begin() as conn:
                web.store.audit(conn, "login.locked", username=name[:80])
            return web.render("login.html", session=None, status=429, login_csrf=cookie,
                              next=target, error="Too many failed attempts for this user; "
                              "try again in 15 minutes or ask an admin.")  # fmt: skip
        user = users.authenticate(web.store, name, password)
        with web.store.engine.begin() as conn:
            web.store.audit(conn, "login" if user else "login.failed",
                            user_id=user.id if user else None,
                            username=name[:80])  # fmt: skip
        if user is None:
            return web.render("login.html", session=None, status=401, login_csrf=cookie,
                              next=target, error="Wrong user name or password.")  # fmt: skip
        token, _session = users.open_session(web.store, user)
        response = RedirectResponse(target, status_code=303)
        web.set_session_cookie(response, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/worklist/login")
        return response

    @api.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        session, _form = await web.posted(request)
        await run_in_threadpool(do_logout, session, request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/worklist/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def do_logout(session: Session, token: str) -> None:
        users.close_session(web.store, token)
        with web.store.engine.begin() as conn:
            web.store.audit(conn, "logout", user_id=session.user.id,
                            username=session.user.username)  # fmt: skip

    @api.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> HTMLResponse:
        session = web.session(request)
        meta = web.rules()
        published = {k: (m.published_ppv, m.published_n) for k, m in meta.items()}
        per_rule = stats.rule_stats(web.store, published)
        kappa, n_pairs, agreement = stats.overall_kappa(per_rule)
        return web.render(
            "dashboard.html", session=session, rules=per_rule, chart=ppv_svg(per_rule),
            kappa=kappa, n_pairs=n_pairs, agreement=agreement, meta=meta,
            feedback=feedback(),
        )  # fmt: skip

    def feedback() -> stats.FeedbackStats:
        plain = stats.feedback_stats(web.store)
        if not plain.total:
            return plain
        try:
            from plugin.cds.cards import card_uuid
        except ImportError:  # the worklist runs without the CDS Hooks service too
            return plain
        return stats.feedback_stats(web.store, stats.card_rules(web.store, card_uuid))

    @api.get("/admin/users", response_class=HTMLResponse)
    def users_page(request: Request) -> HTMLResponse:
        session = web.session(request, admin=True)
        return web.render("users.html", session=session, users=users.list_users(web.store),
                          message="", kind="info")  # fmt: skip

    @api.post("/admin/users", response_class=HTMLResponse)
    async def add_user(request: Request) -> HTMLResponse:
        session, form = await web.posted(request, admin=True)
        return await run_in_threadpool(do_add_user, session, form)

    def do_add_user(session: Session, form: dict[str, Any]) -> HTMLResponse:
        try:
            made = users.create_user(web.store, str(form.get("username") or "").strip(),
                                     str(form.get("password") or ""),
                                     str(form.get("role") or ""))  # fmt: skip
            message, kind, status = f"User {made.username} ({made.role}) created.", "info", 200
        except StoreError as exc:
            message, kind, status = str(exc), "error", 400
        return web.render("users.html", session=session, users=users.list_users(web.store),
                          message=message, kind=kind, status=status)  # fmt: skip

    @api.get("/admin/audit", response_class=HTMLResponse)
    def audit(request: Request) -> HTMLResponse:
        session = web.session(request, admin=True)
        return web.render("audit.html", session=session,
                          entries=cases.audit_entries(web.store, limit=300))  # fmt: skip

    @api.get("/admin/export/{fmt}", response_model=None)
    def export_file(request: Request, fmt: str) -> Response:
        session = web.session(request, admin=True)
        if fmt not in EXPORTS:
            return web.render("error.html", session=session, status=404, title="No such export",
                              message="Exports: csv, detectedissue, labels.")  # fmt: skip
        media, filename = EXPORTS[fmt]
        body = export_bytes(web, fmt)
        with web.store.engine.begin() as conn:
            web.store.audit(conn, "export", user_id=session.user.id,
                            username=session.user.username, format=fmt)  # fmt: skip
        headers = HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(body, media_type=media, headers=headers)

    return api
