"""The dashboard, and the admin pages (users, audit log, exports)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from plugin.errors import StoreError
from plugin.worklist import cases, export, stats, users
from plugin.worklist.charts import ppv_svg
from plugin.worklist.deps import (
    HEADERS,
    AdminDep,
    FormDep,
    PagesDep,
    RulesDep,
    SessionDep,
    StoreDep,
)
from plugin.worklist.rulemeta import RuleMeta
from plugin.worklist.store import Store

router = APIRouter(prefix="/worklist", tags=["worklist"])

EXPORTS = {
    "csv": ("text/csv", "reviewed-cases.csv"),
    "detectedissue": ("application/fhir+ndjson", "detectedissues.ndjson"),
    "labels": ("text/csv", "labels.csv"),
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
    else:
        triggers = {k: m.trigger for k, m in rules.items() if m.trigger}
        export.write_labels(store, buf, triggers)
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
    published = {k: (m.published_ppv, m.published_n) for k, m in rules.items()}
    per_rule = stats.rule_stats(store, published)
    kappa, n_pairs, agreement = stats.overall_kappa(per_rule)
    return pages.render(
        "dashboard.html", session=session, rules=per_rule, chart=ppv_svg(per_rule),
        kappa=kappa, n_pairs=n_pairs, agreement=agreement, meta=rules, feedback=feedback(store),
    )  # fmt: skip


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(session: AdminDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    return pages.render("users.html", session=session, users=users.list_users(store),
                        message="", kind="info")  # fmt: skip


@router.post("/admin/users", response_class=HTMLResponse)
def add_user(session: AdminDep, form: FormDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    try:
        made = users.create_user(store, str(form.get("username") or "").strip(),
                                 str(form.get("password") or ""),
                                 str(form.get("role") or ""))  # fmt: skip
        message, kind, status = f"User {made.username} ({made.role}) created.", "info", 200
    except StoreError as exc:
        message, kind, status = str(exc), "error", 400
    return pages.render("users.html", session=session, users=users.list_users(store),
                        message=message, kind=kind, status=status)  # fmt: skip


@router.get("/admin/audit", response_class=HTMLResponse)
def audit(session: AdminDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    return pages.render("audit.html", session=session,
                        entries=cases.audit_entries(store, limit=300))  # fmt: skip


@router.get("/admin/export/{fmt}", response_model=None)
def export_file(
    fmt: str, session: AdminDep, store: StoreDep, pages: PagesDep, rules: RulesDep
) -> Response:
    if fmt not in EXPORTS:
        return pages.render("error.html", session=session, status=404, title="No such export",
                            message="Exports: csv, detectedissue, labels.")  # fmt: skip
    media, filename = EXPORTS[fmt]
    body = export_bytes(store, rules, fmt)
    with store.engine.begin() as conn:
        store.audit(conn, "export", user_id=session.user.id,
                    username=session.user.username, format=fmt)  # fmt: skip
    headers = HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(body, media_type=media, headers=headers)
