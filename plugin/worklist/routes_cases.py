"""Queue, case view, assignment and the review form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from plugin.errors import ConflictError, StoreError
from plugin.worklist import cases, saferdx
from plugin.worklist.charts import timeline_svg
from plugin.worklist.store import LEVEL_RANK
from plugin.worklist.users import Session, list_users
from plugin.worklist.web import Forbidden, Web

FILTER_KEYS = ("rule", "status", "assignee", "level", "since", "until")


def _date(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None


def _filter(params: dict[str, str], session: Session) -> cases.QueueFilter:
    who = params.get("assignee") or ""
    assignee = session.user.id if who == "me" else 0 if who == "none" else None
    if _int(who):
        assignee = _int(who)
    page = params.get("page", "1")
    return cases.QueueFilter(
        rule=params.get("rule") or None,
        status=params.get("status") if params.get("status") in (*saferdx.STATUSES, "open")
        else None,
        assignee=assignee,
        level=params.get("level") if params.get("level") in LEVEL_RANK else None,
        since=_date(params.get("since")),
        until=_date(params.get("until")),
        page=max(1, _int(page)),
    )  # fmt: skip


def _int(value: object) -> int:
    """A posted integer (version, user id); 0 when missing or not a number."""
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0


def dx_suggestions(model_dx: list[Any]) -> list[str]:
    """The model's likely diagnoses, then the ranker's target list (so exported labels map
    onto what ``dxsafety train`` learns; free text is still allowed)."""
    names = [str(dx) for dx, _p in model_dx]
    try:
        from plugin.rank.codesets import TARGET_LABELS
    except ImportError:  # the ranker is optional for the worklist
        return names
    return list(dict.fromkeys([*names, *(v for k, v in TARGET_LABELS.items() if k != "other")]))


def review_input(form: dict[str, Any]) -> saferdx.ReviewInput:
    def score(i: int) -> int:
        raw = form.get(f"item{i}")
        return _int(raw)

    return saferdx.ReviewInput(
        items=[score(i) for i in range(1, len(saferdx.ITEMS) + 1)],
        harm=str(form.get("harm") or ""),
        harm_duration=str(form.get("harm_duration")) if form.get("harm_duration") else None,
        miscoded=form.get("miscoded") == "on",
        missed_dx=str(form.get("missed_dx") or "").strip(),
        notes=str(form.get("notes") or "").strip(),
    )


def router(web: Web) -> APIRouter:
    api = APIRouter(prefix="/worklist", tags=["worklist"])

    # GET handlers are plain functions (FastAPI runs them in its thread pool); POST handlers
    # read the form on the event loop, then do their database work in the pool too.
    @api.get("/", response_class=HTMLResponse)
    def queue(request: Request) -> HTMLResponse:
        session = web.session(request)
        params = dict(request.query_params)
        flt = _filter(params, session)
        page = cases.queue(web.store, flt)
        kept = {k: params[k] for k in FILTER_KEYS if params.get(k)}
        return web.render(
            "queue.html", session=session, page=page, params=kept,
            rules=cases.rule_choices(web.store), users=list_users(web.store),
            levels=list(LEVEL_RANK), statuses=saferdx.STATUSES,
            prev_url="?" + urlencode(kept | {"page": page.page - 1}),
            next_url="?" + urlencode(kept | {"page": page.page + 1}),
        )  # fmt: skip

    def case_page(
        session: Session, key: str, *, status: int = 200, message: str = "",
        kind: str = "info", form: dict[str, Any] | None = None, audit: bool = True,
    ) -> HTMLResponse:  # fmt: skip
        case = cases.get_case(web.store, key, session.user if audit else None)
        if case is None:
            return web.render("error.html", session=session, status=404, title="No such case",
                              message="This case is not in the worklist.")  # fmt: skip
        f = case.finding
        mine = any(r["reviewer_id"] == session.user.id for r in case.reviews)
        blinded = not (mine or session.user.is_admin or f["status"] == "closed")
        can_review = saferdx.review_round(f["status"]) is not None and not mine
        chart = timeline_svg(f["snapshot"], f) if f.get("snapshot") else None
        return web.render(
            "case.html", session=session, status=status, case=case, f=f, chart=chart,
            rule=web.rules().get(f["rule_id"]), reviews=[] if blinded else case.reviews,
            hidden_reviews=len(case.reviews) if blinded else 0, can_review=can_review,
            round=saferdx.review_round(f["status"]), items=saferdx.ITEMS,
            scale_labels=saferdx.SCALE_LABELS, harm=saferdx.HARM,
            durations=saferdx.DURATIONS, users=list_users(web.store), message=message,
            kind=kind, form=form or {}, dx_suggestions=dx_suggestions(f["missed_dx"]),
        )  # fmt: skip

    @api.get("/cases/{key}", response_class=HTMLResponse)
    def case_view(request: Request, key: str) -> HTMLResponse:
        session = web.session(request)
        saved = request.query_params.get("saved")
        message = f"Saved. The case is now: {saferdx.STATUS_LABELS.get(saved, saved)}." if (
            saved) else ""  # fmt: skip
        return case_page(session, key, message=message)

    @api.post("/cases/{key}/review", response_model=None)
    async def review(request: Request, key: str) -> Response:
        session, form = await web.posted(request)
        return await run_in_threadpool(save, session, key, form)

    def save(session: Session, key: str, form: dict[str, Any]) -> Response:
        finding_id = cases.find_id(web.store, key)
        if finding_id is None:
            return case_page(session, key)
        try:
            data = review_input(form)
            new_status = cases.save_review(web.store, finding_id, data, by=session.user,
                                           version=_int(form.get("version")))  # fmt: skip
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors()})
            text = "Please complete: " + ", ".join(fields).replace("items", "all 13 items")
            return case_page(session, key, status=400, message=text, kind="error", form=form,
                             audit=False)  # fmt: skip
        except ConflictError:
            with web.store.engine.begin() as conn:
                web.store.audit(conn, "review.conflict", user_id=session.user.id,
                                username=session.user.username, finding_id=finding_id)  # fmt: skip
            text = ("Conflict: another reviewer saved this case after you opened it, so your "
                    "review was NOT saved. Your answers are kept below; read the case's new "
                    "state, then save again.")  # fmt: skip
            form.pop("version", None)
            return case_page(session, key, status=409, message=text, kind="error", form=form,
                             audit=False)  # fmt: skip
        except StoreError as exc:
            return case_page(session, key, status=409, message=str(exc), kind="error",
                             form=form, audit=False)  # fmt: skip
        return RedirectResponse(f"/worklist/cases/{key}?saved={new_status}", status_code=303)

    @api.post("/cases/{key}/assign", response_model=None)
    async def assign(request: Request, key: str) -> Response:
        session, form = await web.posted(request)
        return await run_in_threadpool(do_assign, session, key, form)

    def do_assign(session: Session, key: str, form: dict[str, Any]) -> Response:
        finding_id = cases.find_id(web.store, key)
        if finding_id is None:
            return case_page(session, key)
        raw = str(form.get("assignee") or "")
        target = session.user.id if raw == "me" else _int(raw) or None
        if not session.user.is_admin and target not in (None, session.user.id):
            raise Forbidden("Reviewers can assign cases to themselves only.")
        try:
            cases.assign(web.store, finding_id, target, by=session.user,
                         version=_int(form.get("version")))  # fmt: skip
        except StoreError as exc:
            return case_page(session, key, status=409, message=str(exc), kind="error",
                             audit=False)  # fmt: skip
        return RedirectResponse(f"/worklist/cases/{key}", status_code=303)

    @api.post("/cases/{key}/reopen", response_model=None)
    async def reopen(request: Request, key: str) -> Response:
        session, form = await web.posted(request, admin=True)
        return await run_in_threadpool(do_reopen, session, key, form)

    def do_reopen(session: Session, key: str, form: dict[str, Any]) -> Response:
        finding_id = cases.find_id(web.store, key)
        if finding_id is None:
            return case_page(session, key)
        try:
            cases.reopen_for_review(web.store, finding_id, by=session.user,
                                    version=_int(form.get("version")))  # fmt: skip
        except StoreError as exc:
            return case_page(session, key, status=409, message=str(exc), kind="error",
                             audit=False)  # fmt: skip
        return RedirectResponse(f"/worklist/cases/{key}", status_code=303)

    return api
