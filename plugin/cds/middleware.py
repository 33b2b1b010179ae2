"""ASGI middleware of the CDS routes.

* :class:`BodyLimit`: a request-body size limit (``settings.cds_max_request_bytes``) that works
  with and without ``Content-Length``: a declared length over the limit is refused before
  reading; a streamed body is counted as it arrives.
* :class:`CatchAll`: any unexpected exception → 500 OperationOutcome with CORS headers.
* :class:`ServerTiming`: a ``Server-Timing: app;dur=<ms>`` header on every CDS response (time
  from the request's arrival to the response start), so EHR integration teams and
  ``bench/cds_bench.py`` can tell server time from network time.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugin.errors import BodyTooLarge

log = logging.getLogger(__name__)

_BODY = orjson.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "too-long",
                "details": {"text": "the request body is larger than this service accepts"},
            }
        ],
    }
)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, prefix: str = "/cds-services"):
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/fhir+json"),
                    (b"content-length", str(len(_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _BODY})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)


class ServerTiming:
    def __init__(self, app: ASGIApp, *, prefix: str = "/cds-services"):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.2f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


_CRASH = orjson.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "exception",
                "details": {"text": "the service failed; no advice"},
            }
        ],
    }
)


class CatchAll:
    """Inside CORS: an unexpected exception anywhere under the CDS routes (a dependency, a
    handler) becomes a 500 OperationOutcome that still carries the CORS headers, instead of
    Starlette's plain-text 500 from outside every middleware. Logged with its traceback."""

    def __init__(self, app: ASGIApp, *, prefix: str = "/cds-services"):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            raise  # BodyLimit (outside) answers 413
        except Exception:
            log.exception("CDS request failed")
            if started:
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/fhir+json"),
                        (b"content-length", str(len(_CRASH)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _CRASH})
