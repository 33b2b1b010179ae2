"""The CDS Hooks routes: discovery, hook calls, feedback, and their error replies.

Errors: 401 with no body for any JWT problem (best practices: "without any additional
information"); 400, 404, 405, 412, 413, 415, 503 and 500 with a FHIR OperationOutcome body
(3.0 asks for one on every non-2xx). Messages name fields and prefetch keys, never patient data, and
FastAPI's default validation reply (which echoes the input) is never used here.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from plugin.cds import cards
from plugin.cds.advice import Advice
from plugin.cds.deps import ClientDep, StateDep
from plugin.cds.issuers import Issuer
from plugin.cds.models import (
    CdsResponse,
    Discovery,
    FeedbackBatch,
    FeedbackItem,
    HookRequest,
)
from plugin.cds.prefetch import PrefetchResolver
from plugin.cds.schema import check_discovery, check_response
from plugin.cds.services import SERVICES, Service
from plugin.cds.state import CdsState
from plugin.errors import (
    CdsAuthError,
    CdsError,
    CdsRequestError,
    PrefetchTimeout,
    PrefetchUnavailable,
    ReplayStoreUnavailable,
    SettingsError,
    UnknownService,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)
JSON = "application/json"
JSON_TYPES = frozenset({"application/json", "application/fhir+json"})
PREFIX = "/cds-services"


def operation_outcome(
    status: int, text: str, *, code: str = "processing", diagnostics: str | None = None
) -> Response:
    issue: dict[str, Any] = {"severity": "error", "code": code, "details": {"text": text}}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    body = {"resourceType": "OperationOutcome", "issue": [issue]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/fhir+json")


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type=JSON)


def _service(service_id: str) -> Service:
    service = SERVICES.get(service_id)
    if service is None:
        raise UnknownService(service_id)
    return service


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '$'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )


async def _body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/json")
    raw = await request.body()
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark: JSON text may carry one
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CdsRequestError("the body is not JSON") from exc


discovery = APIRouter(prefix="/cds-services", tags=["cds-hooks"])
hooks = APIRouter(prefix="/cds-services", tags=["cds-hooks"])
feedback = APIRouter(prefix="/cds-services", tags=["cds-hooks"])


def discovery_document() -> dict[str, Any]:
    """The discovery JSON, checked against our schema (a broken one stops start-up)."""
    body = Discovery(services=[s.definition() for s in SERVICES.values()]).to_json()
    problems = check_discovery(body)
    if problems:
        raise SettingsError("the CDS discovery document is invalid: " + "; ".join(problems))
    return body


@discovery.get("", response_model=Discovery)
def list_services(request: Request, _client: ClientDep) -> Response:
    return Response(request.app.state.cds_discovery, media_type=JSON)


def _advise(
    state: CdsState, service: Service, request: HookRequest, issuer: Issuer | None
) -> tuple[dict[str, Any], Advice | None]:
    """The blocking part of a hook call: prefetch (maybe fetching), timeline, cards."""
    try:
        ctx = service.context_model.model_validate(request.context)
    except ValidationError as exc:
        raise CdsRequestError(f"context: {_problems(exc)}") from exc
    resolver = PrefetchResolver(
        request,
        issuer=issuer,
        budget_s=state.settings.cds_fetch_budget_s,
        max_bytes=state.settings.cds_fetch_max_bytes,
        fetcher_factory=state.fetcher_factory,
        require_https=state.settings.env == "production",
    )
    try:
        gathered = resolver.gather(service.templates, ctx.patientId)
    except PrefetchTimeout as exc:
        if not state.settings.cds_timeout_card:
            raise
        log.info("CDS %s: FHIR deadline passed (%s); answering with a card", service.id, exc)
        card = cards.timeout_card(state.settings.cds_fetch_budget_s)
        return CdsResponse(cards=[card]).to_json(), None
    if not gathered.patient_found:  # the patient does not exist on the server
        return CdsResponse(cards=[]).to_json(), None
    closed = state.closed_cases if state.settings.cds_suppress_closed else None
    advice = state.advisor.advise(service, ctx, gathered.resources, state.clock(), closed=closed)
    return CdsResponse(cards=advice.cards).to_json(), advice


@hooks.post("/{service_id}", response_model=CdsResponse)
async def call_service(
    service_id: str, request: Request, state: StateDep, client: ClientDep
) -> Response:
    started = time.perf_counter()
    service = _service(service_id)
    try:
        hook_request = HookRequest.model_validate(await _body(request))
    except ValidationError as exc:
        raise CdsRequestError(_problems(exc)) from exc
    if hook_request.hook != service.hook:
        raise CdsRequestError(
            f"service {service.id} answers {service.hook}, not {hook_request.hook[:60]}"
        )
    try:
        body, advice = await run_in_threadpool(_advise, state, service, hook_request, client.issuer)
    except CdsError:
        raise
    except Exception:
        log.exception("CDS service %s failed", service.id)
        return operation_outcome(500, "the service failed; no advice", code="exception")
    problems = check_response(body)
    if problems:
        log.error("refusing to send a non-conformant CDS response: %s", "; ".join(problems))
        return operation_outcome(
            500,
            "the service built a response that breaks the CDS Hooks rules; it was not sent",
            code="exception",
        )
    log.info(
        "CDS %s for iss=%s tenant=%s: %d card(s) in %.1f ms",
        service.id,
        client.iss,
        client.tenant,
        len(body["cards"]),
        (time.perf_counter() - started) * 1000,
    )
    response = _json(body)
    if advice is not None and (advice.issued or advice.suppressed):
        # after the reply: the case links must resolve, the cards and suppressions be on record
        response.background = BackgroundTask(state.record_findings, advice, service.id)
    return response


def _items(raw: Any) -> list[FeedbackItem]:
    """Both shapes: the 2.0 ``{"feedback": [...]}`` and a bare item (HAPI, 2020 ballot)."""
    try:
        if isinstance(raw, dict) and "feedback" in raw:
            return FeedbackBatch.model_validate(raw).feedback
        return [FeedbackItem.model_validate(raw)]
    except ValidationError as exc:
        raise CdsRequestError(_problems(exc)) from exc


@feedback.post("/{service_id}/feedback")
async def receive_feedback(
    service_id: str, request: Request, state: StateDep, client: ClientDep
) -> Response:
    service = _service(service_id)
    items = _items(await _body(request))
    store = await run_in_threadpool(state.worklist_store)
    new = 0
    unique = {(i.card, i.outcome, i.outcomeTimestamp): i for i in items}  # idempotency key
    for item in unique.values():
        reason = item.overrideReason
        kept = reason.model_dump(exclude_none=True) if reason is not None else None
        stored = await run_in_threadpool(
            partial(
                store.record_feedback,
                service_id=service.id,
                card_id=item.card,
                outcome=item.outcome,
                outcome_timestamp=item.outcomeTimestamp.astimezone(UTC),
                override_reason=kept or None,
                accepted_suggestions=[{"id": s.id} for s in item.acceptedSuggestions],
            )
        )
        new += int(stored)
    log.info(
        "CDS feedback for %s from iss=%s: %d item(s), %d new",
        service.id,
        client.iss,
        len(items),
        new,
    )
    return _json({})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's {"detail": ...} everywhere else; an OperationOutcome on the CDS routes
        if not request.url.path.startswith(PREFIX):
            return await http_exception_handler(request, exc)
        response = operation_outcome(
            exc.status_code,
            "method not allowed" if exc.status_code == 405 else "request refused",
            code="not-supported" if exc.status_code == 405 else "processing",
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(UnsupportedMediaType)
    async def _media(_request: Request, exc: UnsupportedMediaType) -> Response:
        return operation_outcome(415, "unsupported media type", code="not-supported",
                                 diagnostics=str(exc))  # fmt: skip

    @app.exception_handler(ReplayStoreUnavailable)
    async def _replay_store(_request: Request, exc: ReplayStoreUnavailable) -> Response:
        log.error("CDS call refused: %s", exc)
        return operation_outcome(503, "the service cannot check token reuse right now",
                                 code="transient")  # fmt: skip

    @app.exception_handler(CdsAuthError)
    async def _unauthorized(_request: Request, _exc: CdsAuthError) -> Response:
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CdsRequestError)
    async def _bad_request(_request: Request, exc: CdsRequestError) -> Response:
        return operation_outcome(
            400, "invalid CDS Hooks request", code="invalid", diagnostics=str(exc)[:1000]
        )

    @app.exception_handler(UnknownService)
    async def _not_found(_request: Request, exc: UnknownService) -> Response:
        return operation_outcome(
            404,
            "no such CDS service",
            code="not-found",
            diagnostics=f"unknown service id {str(exc)[:100]!r}",
        )

    @app.exception_handler(PrefetchUnavailable)
    async def _precondition(_request: Request, exc: PrefetchUnavailable) -> Response:
        log.info("CDS call answered 412: %s", exc)
        return operation_outcome(
            412,
            "data the service needs is neither prefetched nor obtainable from fhirServer",
            diagnostics=str(exc)[:1000],
        )
