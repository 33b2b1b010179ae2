"""CDS Hooks 2.0 service: discovery, patient-view, encounter-start, encounter-discharge,
order-sign, order-select, appointment-book and feedback, with JWT verification (jti single
use across workers and hosts), deny-by-default FHIR call-backs under one deadline per call,
spec prefetch semantics and cards built from the shared rule engine (and the ranker, when
a model is configured).

:func:`install` adds it to a FastAPI app; :func:`plugin.app.create_app` is the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from plugin.cds import routes
from plugin.cds.middleware import BodyLimit, CatchAll, ServerTiming
from plugin.cds.prefetch import FetcherFactory
from plugin.cds.state import CdsState
from plugin.config import Settings
from plugin.rules import RuleSet


def install(
    app: FastAPI,
    settings: Settings,
    *,
    ruleset: RuleSet,
    clock: Callable[[], datetime] | None = None,
    fetcher_factory: FetcherFactory | None = None,
) -> CdsState:
    """Add the CDS Hooks routes to ``app``; ``ruleset`` is the one the app loaded."""
    state = CdsState.build(settings, ruleset=ruleset, clock=clock, fetcher_factory=fetcher_factory)
    app.state.cds = state
    app.state.cds_discovery = orjson.dumps(routes.discovery_document())
    app.include_router(routes.discovery)
    app.include_router(routes.hooks)
    app.include_router(routes.feedback)
    routes.install_error_handlers(app)
    # Starlette wraps in reverse order: CORS outermost, so 401/412/413/500 replies carry CORS
    # headers too and a browser client can read them; timing includes the size check.
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, max_bytes=settings.cds_max_request_bytes)
    app.add_middleware(ServerTiming)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cds_allowed_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    return state


__all__ = ["CdsState", "install"]
