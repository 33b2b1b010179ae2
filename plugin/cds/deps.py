"""FastAPI dependencies of the CDS routes (``Annotated`` aliases keep handlers short)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from starlette.routing import Route

from plugin.cds.jwt_auth import ClientIdentity
from plugin.cds.state import CdsState
from plugin.errors import CdsAuthError

log = logging.getLogger(__name__)

DEV_CLIENT = ClientIdentity(iss="unsigned-development-mode", jti="-")


def get_state(request: Request) -> CdsState:
    state: CdsState = request.app.state.cds
    return state


StateDep = Annotated[CdsState, Depends(get_state)]


def endpoint_url(state: CdsState, request: Request) -> str:
    """The exact URL the client had to put in ``aud``: our configured public base URL plus
    the route's path (never the Host header, which a proxy may rewrite)."""
    route = request.scope.get("route")
    path = (
        route.path_format.format(**request.path_params)
        if isinstance(route, Route)
        else request.url.path
    )
    return state.settings.public_base_url.rstrip("/") + path


def require_client(request: Request, state: StateDep) -> ClientIdentity:
    if state.settings.cds_unsigned_dev_mode:
        return DEV_CLIENT
    try:
        client = state.verifier.verify(
            request.headers.get("authorization"), endpoint_url(state, request)
        )
    except CdsAuthError as exc:
        log.info("CDS call to %s refused: %s", request.url.path, exc)
        raise
    log.debug("CDS call from iss=%s tenant=%s jti=%s", client.iss, client.tenant, client.jti)
    return client


ClientDep = Annotated[ClientIdentity, Depends(require_client)]
