"""The dashboard, and the admin pages (users, audit log, exports)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from plugin.errors import StoreError
from plugin.worklist import cases, export, labels_export, stats, users
from plugin.worklist.charts import ppv_svg
from plugin.worklist.deps import (
    HEADERS,
    AdminDep,
    FormDep,
    Pages,
    PagesDep,
    RulesDep,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from plugin.worklist.rulemeta import RuleMeta
from plugin.worklist.store import Store
from plugin.worklist.users import Session

router = APIRouter(prefix="/worklist", tags=["worklist"])

EXPORTS = {
    "csv": ("text/csv", "reviewed-cases.csv"),
    "detectedissue": ("application/fhir+ndjson", "detectedissues.ndjson"),
    "labels": ("text/csv", "labels.csv"),
    # issue 15: one row per review (items, notes, time spent) and its REDCap data dictionary
    "reviews": ("text/csv", "reviews.csv"),
    "reviews-dictionary": ("text/csv", "reviews-data-dictionary.csv"),
}


def export_bytes(store: Store, rules: Mapping[str, RuleMeta], fmt: str) -> bytes:
    if fmt == "detectedissue":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.ndjson"
            export.write_detectedissues(store, path)
            return path.read_bytes()
    buf = io.StringIO()
    if fmt == "csv":
        export.write_csv(store, buf)
    elif fmt == "reviews":
        export.write_reviews(store, buf)
    elif fmt == "reviews-dictionary":
        export.write_review_dictionary(buf)
    else:  # labels: reviewed cases only, with how each was selected (issue 13)
        labels_export.write_labels(store, buf)
    return buf.getvalue().encode()


def feedback(store: Store) -> stats.FeedbackStats:
    """CDS card feedback, per rule when the CDS service can say which rule a card came from."""
    plain = stats.feedback_stats(store)
    if not plain.total:
        return plain
    try:
        from plugin.cds.cards import card_uuid
    except ImportError:  # the worklist runs without the CDS Hooks service too
        return plain
    return stats.feedback_stats(store, stats.card_rules(store, card_uuid))


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    session: SessionDep, store: StoreDep, pages: PagesDep, rules: RulesDep
) -> HTMLResponse:
    with store.engine.begin() as conn:  # issue 15: page views are audited
        store.audit(conn, "dashboard.view", user_id=session.user.id,
                    username=session.user.username)  # fmt: skip
    published = {k: (m.published_ppv, m.published_n) for k, m in rules.items()}
    per_rule = stats.rule_stats(store, published)
    kappa, n_pairs, agreement = stats.overall_kappa(per_rule)
    return pages.render(
        "dashboard.html", session=session, rules=per_rule, chart=ppv_svg(per_rule),
        kappa=kappa, n_pairs=n_pairs, agreement=agreement, meta=rules, feedback=feedback(store),
    )  # fmt: skip


def _users_page(
    session: Session, store: Store, pages: Pages, message: str = "", kind: str = "info",
    status: int = 200,
) -> HTMLResponse:  # fmt: skip
    return pages.render("users.html", session=session, users=users.list_accounts(store),
                        workload=cases.workload(store), message=message, kind=kind,
                        status=status)  # fmt: skip


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(session: AdminDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    return _users_page(session, store, pages)


@router.post("/admin/users", response_class=HTMLResponse)
def add_user(
    session: AdminDep, form: FormDep, store: StoreDep, pages: PagesDep, settings: SettingsDep
) -> HTMLResponse:
    try:
        made = users.create_user(store, str(form.get("username") or "").strip(),
                                 str(form.get("password") or ""),
                                 str(form.get("role") or ""), by=session.user,
                                 blocklist=settings.worklist_password_blocklist)  # fmt: skip
        message, kind, status = f"User {made.username} ({made.role}) created.", "info", 200
    except StoreError as exc:
        message, kind, status = str(exc), "error", 400
    return _users_page(session, store, pages, message, kind, status)


ACCOUNT_ACTIONS = ("deactivate", "activate", "unlock", "revoke", "reset")


@router.post("/admin/users/{user_id}/{action}", response_class=HTMLResponse)
def account_action(
    user_id: int, action: str, session: AdminDep, form: FormDep, store: StoreDep,
    pages: PagesDep, settings: SettingsDep,
) -> HTMLResponse:  # fmt: skip
    """Account lifecycle: deactivate/activate, unlock, end sessions, reset the password."""
    try:
        if action in ("deactivate", "activate"):
            users.set_active(store, user_id, action == "activate", by=session.user)
            message = f"Account {action}d."
        elif action == "unlock":
            users.unlock(store, user_id, by=session.user)
            message = "Failed logins forgotten; the account can log in again."
        elif action == "revoke":
            n = users.revoke_sessions(store, user_id, by=session.user)
            message = f"{n} session(s) ended."
        elif action == "reset":
            users.reset_password(store, user_id, str(form.get("password") or ""),
                                 by=session.user,
                                 blocklist=settings.worklist_password_blocklist)  # fmt: skip
            message = "Password reset; the account's sessions were ended."
        else:
            return _users_page(session, store, pages, "No such action.", "error", 404)
    except StoreError as exc:
        return _users_page(session, store, pages, str(exc), "error", 400)
    return _users_page(session, store, pages, message)


AUDIT_PAGE = 100


@router.get("/admin/audit", response_class=HTMLResponse)
def audit(request: Request, session: AdminDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    q = request.query_params
    page = max(1, int(q["page"])) if q.get("page", "").isdigit() and len(q["page"]) < 7 else 1
    case = q.get("case", "")
    flt = cases.AuditFilter(
        user=q.get("user") or None, action=q.get("action") or None,
        finding_id=int(case) if case.isdigit() and len(case) < 10 else None,
        since=_day(q.get("since")), until=_day(q.get("until")),
    )  # fmt: skip
    entries = cases.audit_entries(store, limit=AUDIT_PAGE + 1, offset=(page - 1) * AUDIT_PAGE,
                                  flt=flt)  # fmt: skip
    with store.engine.begin() as conn:
        store.audit(conn, "audit.view", user_id=session.user.id,
                    username=session.user.username, page=page)  # fmt: skip
    kept = {k: q[k] for k in ("user", "action", "case", "since", "until") if q.get(k)}
    return pages.render(
        "audit.html", session=session, entries=entries[:AUDIT_PAGE], page=page, params=kept,
        prev_url="?" + urlencode(kept | {"page": page - 1}),
        next_url="?" + urlencode(kept | {"page": page + 1}) if len(entries) > AUDIT_PAGE
        else "",
    )  # fmt: skip


def _day(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


@router.get("/admin/export/{fmt}", response_model=None)
def export_file(
    fmt: str, session: AdminDep, store: StoreDep, pages: PagesDep, rules: RulesDep
) -> Response:
    if fmt not in EXPORTS:
        return pages.render("error.html", session=session, status=404, title="No such export",
                            message="Exports: " + ", ".join(EXPORTS) + ".")  # fmt: skip
    media, filename = EXPORTS[fmt]
    body = export_bytes(store, rules, fmt)
    with store.engine.begin() as conn:
        store.audit(conn, "export", user_id=session.user.id,
                    username=session.user.username, format=fmt)  # fmt: skip
    headers = HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(body, media_type=media, headers=headers)
