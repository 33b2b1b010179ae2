"""Queue, case view, assignment and the review form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from plugin.config import Settings
from plugin.errors import ConflictError, Forbidden, StoreError
from plugin.worklist import cases, display, saferdx
from plugin.worklist.charts import timeline_svg
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
from plugin.worklist.routes_login import safe_next
from plugin.worklist.rulemeta import RuleMeta
from plugin.worklist.store import LEVEL_RANK, Store
from plugin.worklist.users import Session, list_users

router = APIRouter(prefix="/worklist", tags=["worklist"])

FILTER_KEYS = ("rule", "status", "assignee", "level", "since", "until", "q", "sort")
# the only texts the "saved" banner shows (it comes back in the URL after a save)
SAVED_MESSAGES = {
    "closed": "Saved. The case is closed.",
    "review": "Saved. The case goes on to another reviewer.",
    "dissent": "Your answers were recorded as a dissent on this case.",
}


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
    status = params.get("status", "open")  # the queue opens on the cases still to review
    return cases.QueueFilter(
        rule=params.get("rule") or None,
        status=status if status in (*saferdx.STATUSES, "open") else None,
        search=(params.get("q") or "").strip()[:128] or None,
        sort=params["sort"] if params.get("sort") in cases.SORTS else "score",
        blind=not session.user.is_admin,
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
        factors=[str(v) for v in form.get("multi_factor") or []],
    )


def form_problem(exc: ValidationError) -> str:
    """What is wrong with a submitted review form, in the reviewer's words."""
    nul = sorted({str(e["loc"][0]) for e in exc.errors() if "NUL" in e["msg"]})
    if nul:
        return (
            f"{', '.join(nul).replace('missed_dx', 'missed diagnosis').capitalize()}: "
            "contains a NUL character, which cannot be stored; remove it and save again."
        )
    fields = sorted({str(e["loc"][0]) for e in exc.errors()})
    return "Please complete: " + ", ".join(fields).replace("items", "all 13 items")


@dataclass(frozen=True, slots=True)
class CasePage:
    """Renders a case's page: the finding, its chart, the reviews the user may see, the form."""

    store: Store
    pages: Pages
    rules: dict[str, RuleMeta]
    session: Session

    settings: Settings

    def __call__(
        self, key: str, *, status: int = 200, message: str = "", kind: str = "info",
        form: dict[str, Any] | None = None, audit: bool = True, version: int | None = None,
    ) -> HTMLResponse:  # fmt: skip
        session = self.session
        case = cases.get_case(self.store, key, session.user if audit else None)
        if case is None:
            return self.pages.render("error.html", session=session, status=404,
                                     title="No such case",
                                     message="This case is not in the worklist.")  # fmt: skip
        f = case.finding
        shown_version = None
        if version is not None and version != f["snapshot_version"]:
            kept = cases.snapshot_version(self.store, f["id"], version)
            if kept is None:
                return self.pages.render("error.html", session=session, status=404,
                                         title="No such version",
                                         message="This case has no such version.")  # fmt: skip
            # a kept version does not record which model scored it: show none rather
            # than the current one (issue 13: the version shown is the one that scored)
            extra = {k: v for k, v in (f["extra"] or {}).items() if k != "model_version"}
            f = f | {"snapshot": kept["snapshot"], "score": kept["score"],
                     "summary": kept["summary"], "evidence": kept["evidence"],
                     "model_version": None, "extra": extra}  # fmt: skip
            shown_version = version
        mine = any(r["reviewer_id"] == session.user.id for r in case.reviews)
        blinded = not (mine or session.user.is_admin or f["status"] == "closed")
        assigned_elsewhere = f["assignee_id"] not in (None, session.user.id)
        can_review = (saferdx.review_round(f["status"]) is not None and not mine
                      and not assigned_elsewhere)  # fmt: skip
        answers = form if form is not None else (case.draft or {})
        # a conflict that the case's closing made final: keep the answers, offer a dissent
        dissent = form is not None and not can_review and not mine
        chart = timeline_svg(f["snapshot"], f) if f.get("snapshot") else None
        round_ = saferdx.review_round(f["status"])
        tz = self.settings.worklist_timezone
        return self.pages.render(
            "case.html", session=session, status=status, case=case, f=f, chart=chart,
            rule=self.rules.get(f["rule_id"]), reviews=[] if blinded else case.reviews,
            blinded=blinded, can_review=can_review, dissent=dissent,
            round=round_ if session.user.is_admin else 1, items=saferdx.ITEMS,
            scale_labels=saferdx.SCALE_LABELS, harm=saferdx.HARM,
            factors=saferdx.PROCESS_BREAKDOWN,
            durations=saferdx.DURATIONS, users=list_users(self.store), message=message,
            kind=kind, form=_printable(answers), dx_suggestions=dx_suggestions(f["missed_dx"]),
            adjudication=self.pages_adjudication(), ehr_link=ehr_link(self.settings, f),
            shown_version=shown_version, assigned_elsewhere=assigned_elsewhere,
            member_rules=[self.rules.get(m["rule_id"]) for m in case.members],
            evidence=display.evidence_rows(f, tz), notes=display.notes(f, tz), tz=tz,
            index_offset=display.index_offset(f),
        )  # fmt: skip

    def pages_adjudication(self) -> saferdx.Adjudication:
        return saferdx.Adjudication(rule=self.settings.worklist_adjudication,
                                    adjudicator=self.settings.worklist_adjudicator)  # fmt: skip

    def error(
        self, key: str, status: int, message: str, form: dict[str, Any] | None = None
    ) -> HTMLResponse:
        """The case again with an error above the form."""
        return self(key, status=status, message=message, kind="error", form=form, audit=False)


def _printable(form: dict[str, Any]) -> dict[str, Any]:
    """Answers to put back in the form (a refused NUL character is dropped from the echo)."""
    return {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in form.items()}


def ehr_link(settings: Settings, f: dict[str, Any]) -> str | None:
    """The site's deep link to the index encounter in the EHR (``worklist_ehr_link``)."""
    template = settings.worklist_ehr_link
    if not template or not template.startswith(("https://", "http://")):
        return None
    ref = str(f["index_ref"])
    encounter = ref.split("/", 1)[1] if ref.startswith("Encounter/") else ref
    return template.replace("{encounter}", quote(encounter, safe="")).replace(
        "{patient}", quote(str(f["patient_id"]), safe="")
    )


def case_page(
    store: StoreDep, pages: PagesDep, rules: RulesDep, session: SessionDep, settings: SettingsDep
) -> CasePage:
    return CasePage(store, pages, rules, session, settings)


CasePageDep = Annotated[CasePage, Depends(case_page)]


# GET and POST handlers are plain functions: FastAPI runs them in its thread pool, after the
# form dependency (FormDep) has read the posted form on the event loop.
@router.get("/", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    params = dict(request.query_params)
    flt = _filter(params, session)
    page = cases.queue(store, flt)
    kept = {k: params[k] for k in FILTER_KEYS if params.get(k)}
    kept.setdefault("status", "open")
    mine = cases.queue(store, cases.QueueFilter(status="open", assignee=session.user.id,
                                                page_size=1)).total  # fmt: skip
    with store.engine.begin() as conn:  # filters are audited, a searched patient id is not
        store.audit(conn, "queue.view", user_id=session.user.id,
                    username=session.user.username,
                    filters={k: v for k, v in kept.items() if k != "q"},
                    searched=bool(flt.search), page=page.page)  # fmt: skip
    statuses = saferdx.STATUSES if session.user.is_admin else ("new", "in_review", "closed")
    return pages.render(
        "queue.html", session=session, page=page, params=kept,
        rules=cases.rule_choices(store), users=list_users(store),
        levels=list(LEVEL_RANK), statuses=statuses, sorts=cases.SORTS, mine=mine,
        prev_url="?" + urlencode(kept | {"page": page.page - 1}),
        next_url="?" + urlencode(kept | {"page": page.page + 1}),
    )  # fmt: skip


@router.get("/ping")
def ping(session: SessionDep) -> JSONResponse:
    """Keeps a session alive (the idle warning's "stay signed in"); no audit entry."""
    return JSONResponse({"user": session.user.username}, headers=HEADERS)


@router.get("/cases/{key}", response_class=HTMLResponse)
def case_view(request: Request, key: str, page: CasePageDep) -> HTMLResponse:
    saved = request.query_params.get("saved") or ""
    message = SAVED_MESSAGES.get(saved, "")  # never echo the URL's text
    if request.query_params.get("kept"):
        message = ("Your session had ended; your answers were kept as a draft and are "
                   "filled in below. Check them and save.")  # fmt: skip
    raw = request.query_params.get("version")
    return page(key, message=message, version=_int(raw) if raw else None)


@router.post("/cases/{key}/draft", response_model=None)
def draft(key: str, session: SessionDep, form: FormDep, store: StoreDep) -> Response:
    """Autosave (the case page's script posts the form every few seconds while it changes)."""
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return JSONResponse({"error": "no such case"}, status_code=404, headers=HEADERS)
    try:
        cases.save_draft(store, finding_id, form, by=session.user)
    except StoreError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400, headers=HEADERS)
    return JSONResponse({"saved": True}, headers=HEADERS)


@router.post("/cases/{key}/dissent", response_model=None)
def dissent(
    key: str, session: SessionDep, form: FormDep, store: StoreDep, page: CasePageDep
) -> Response:
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return page(key)
    try:
        cases.record_dissent(store, finding_id, review_input(form), by=session.user,
                             version=_int(form.get("version")))  # fmt: skip
    except ValidationError as exc:
        return page.error(key, 400, form_problem(exc), form)
    return RedirectResponse(f"/worklist/cases/{key}?saved=dissent", status_code=303)


@router.post("/bulk-assign", response_model=None)
def bulk_assign(session: AdminDep, form: FormDep, store: StoreDep) -> Response:
    """Admin: assign the ticked cases of a queue page to one reviewer (or nobody)."""
    target = _int(form.get("assignee")) or None
    keys = [str(k) for k in form.get("multi_case") or []][:500]
    done = cases.assign_many(store, keys, target, by=session.user,
                             due=_date(str(form.get("due") or "")))  # fmt: skip
    back = safe_next(str(form.get("back") or ""))
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}assigned={done}", status_code=303)


@router.post("/cases/{key}/review", response_model=None)
def review(
    key: str, session: SessionDep, form: FormDep, store: StoreDep, page: CasePageDep
) -> Response:
    finding_id = cases.find_id(store, key)
    if finding_id is None:
        return page(key)
    try:
        new_status = cases.save_review(store, finding_id, review_input(form), by=session.user,
                                       version=_int(form.get("version")),
                                       rule=page.pages_adjudication())  # fmt: skip
    except Forbidden as exc:  # the answers stay on the page
        return page.error(key, 403, exc.message, form)
    except ValidationError as exc:
        return page.error(key, 400, form_problem(exc), form)
    except ConflictError:
        with store.engine.begin() as conn:
            store.audit(conn, "review.conflict", user_id=session.user.id,
                        username=session.user.username, finding_id=finding_id)  # fmt: skip
        text = ("Conflict: the case changed after you opened it, so your review was NOT "
                "saved. Your answers are kept below; read the case's new state, then save "
                "again, or, if it has closed, record your answers as a dissent.")  # fmt: skip
        form.pop("version", None)
        return page.error(key, 409, text, form)
    except StoreError as exc:
        return page.error(key, 409, str(exc), form)
    saved = "closed" if new_status == "closed" else "review"
    return RedirectResponse(f"/worklist/cases/{key}?saved={saved}", status_code=303)


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
