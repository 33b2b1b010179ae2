"""Queue, case view, assignment and the review form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from plugin.errors import ConflictError, Forbidden, StoreError
from plugin.worklist import cases, saferdx
from plugin.worklist.charts import timeline_svg
from plugin.worklist.deps import AdminDep, FormDep, Pages, PagesDep, RulesDep, SessionDep, StoreDep
from plugin.worklist.rulemeta import RuleMeta
from plugin.worklist.store import LEVEL_RANK, Store
from plugin.worklist.users import Session, list_users

router = APIRouter(prefix="/worklist", tags=["worklist"])

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


@dataclass(frozen=True, slots=True)
class CasePage:
    """Renders a case's page: the finding, its chart, the reviews the user may see, the form."""

    store: Store
    pages: Pages
    rules: dict[str, RuleMeta]
    session: Session

    def __call__(
        self, key: str, *, status: int = 200, message: str = "", kind: str = "info",
        form: dict[str, Any] | None = None, audit: bool = True,
    ) -> HTMLResponse:  # fmt: skip
        session = self.session
        case = cases.get_case(self.store, key, session.user if audit else None)
        if case is None:
            return self.pages.render("error.html", session=session, status=404,
                                     title="No such case",
                                     message="This case is not in the worklist.")  # fmt: skip
        f = case.finding
        mine = any(r["reviewer_id"] == session.user.id for r in case.reviews)
        blinded = not (mine or session.user.is_admin or f["status"] == "closed")
        can_review = saferdx.review_round(f["status"]) is not None and not mine
        chart = timeline_svg(f["snapshot"], f) if f.get("snapshot") else None
        return self.pages.render(
            "case.html", session=session, status=status, case=case, f=f, chart=chart,
            rule=self.rules.get(f["rule_id"]), reviews=[] if blinded else case.reviews,
            hidden_reviews=len(case.reviews) if blinded else 0, can_review=can_review,
            round=saferdx.review_round(f["status"]), items=saferdx.ITEMS,
            scale_labels=saferdx.SCALE_LABELS, harm=saferdx.HARM,
            durations=saferdx.DURATIONS, users=list_users(self.store), message=message,
            kind=kind, form=form or {}, dx_suggestions=dx_suggestions(f["missed_dx"]),
        )  # fmt: skip

    def error(
        self, key: str, status: int, message: str, form: dict[str, Any] | None = None
    ) -> HTMLResponse:
        """The case again with an error above the form (no second audit entry)."""
        return self(key, status=status, message=message, kind="error", form=form, audit=False)


def case_page(store: StoreDep, pages: PagesDep, rules: RulesDep, session: SessionDep) -> CasePage:
    return CasePage(store, pages, rules, session)


CasePageDep = Annotated[CasePage, Depends(case_page)]


# GET and POST handlers are plain functions: FastAPI runs them in its thread pool, after the
# form dependency (FormDep) has read the posted form on the event loop.
@router.get("/", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    params = dict(request.query_params)
    page = cases.queue(store, _filter(params, session))
    kept = {k: params[k] for k in FILTER_KEYS if params.get(k)}
    return pages.render(
        "queue.html", session=session, page=page, params=kept,
        rules=cases.rule_choices(store), users=list_users(store),
        levels=list(LEVEL_RANK), statuses=saferdx.STATUSES,
        prev_url="?" + urlencode(kept | {"page": page.page - 1}),
        next_url="?" + urlencode(kept | {"page": page.page + 1}),
    )  # fmt: skip


@router.get("/cases/{key}", response_class=HTMLResponse)
def case_view(request: Request, key: str, page: CasePageDep) -> HTMLResponse:
    saved = request.query_params.get("saved")
    message = f"Saved. The case is now: {saferdx.STATUS_LABELS.get(saved, saved)}." if (
        saved) else ""  # fmt: skip
    return page(key, message=message)


@router.post("/cases/{key}/review", response_model=None)
def review(
    key: str, session: SessionDep, form: FormDep, store: StoreDep, page: CasePageDep
) -> Response:
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return page(key)
    try:
        new_status = cases.save_review(store, finding_id, review_input(form), by=session.user,
                                       version=_int(form.get("version")))  # fmt: skip
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors()})
        text = "Please complete: " + ", ".join(fields).replace("items", "all 13 items")
        return page.error(key, 400, text, form)
    except ConflictError:
        with store.engine.begin() as conn:
            store.audit(conn, "review.conflict", user_id=session.user.id,
                        username=session.user.username, finding_id=finding_id)  # fmt: skip
        text = ("Conflict: another reviewer saved this case after you opened it, so your "
                "review was NOT saved. Your answers are kept below; read the case's new "
                "state, then save again.")  # fmt: skip
        form.pop("version", None)
        return page.error(key, 409, text, form)
    except StoreError as exc:
        return page.error(key, 409, str(exc), form)
    return RedirectResponse(f"/worklist/cases/{key}?saved={new_status}", status_code=303)


@router.post("/cases/{key}/assign", response_model=None)
def assign(
    key: str, session: SessionDep, form: FormDep, store: StoreDep, page: CasePageDep
) -> Response:
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return page(key)
    raw = str(form.get("assignee") or "")
    target = session.user.id if raw == "me" else _int(raw) or None
    if not session.user.is_admin and target not in (None, session.user.id):
        raise Forbidden("Reviewers can assign cases to themselves only.")
    try:
        cases.assign(store, finding_id, target, by=session.user,
                     version=_int(form.get("version")))  # fmt: skip
    except StoreError as exc:
        return page.error(key, 409, str(exc))
    return RedirectResponse(f"/worklist/cases/{key}", status_code=303)


@router.post("/cases/{key}/reopen", response_model=None)
def reopen(
    key: str, session: AdminDep, form: FormDep, store: StoreDep, page: CasePageDep
) -> Response:
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return page(key)
    try:
        cases.reopen_for_review(store, finding_id, by=session.user,
                                version=_int(form.get("version")))  # fmt: skip
    except StoreError as exc:
        return page.error(key, 409, str(exc))
    return RedirectResponse(f"/worklist/cases/{key}", status_code=303)
