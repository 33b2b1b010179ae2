"""HTTP for FHIR servers: timeouts, retries with backoff, ``Retry-After``, a deadline per call.

One :class:`FhirHttp` owns one ``requests.Session``. Every call either returns a response
with a status below 400 or raises one of (all from :mod:`plugin.errors`):

* :class:`FatalFhirError` -- retrying will not help: 404 and other 4xx, a body that is
  not valid JSON where JSON is due; 401/403 raise its subclass :class:`FhirAuthError`;
* :class:`TemporaryFhirError` -- 429/500/502/503/504 or a connection error, still failing
  after every retry in ``retry_delays``;
* :class:`FhirDeadlineError` -- the call's overall deadline passed (or a ``Retry-After``
  asked us to wait beyond it), so a slow server cannot hang the caller.

A 401 on an authenticated call makes the auth drop its cached token and the request is
sent once more with a fresh one (SMART tokens can be revoked or expire early).

Nothing here logs tokens, query strings or resource ids: URLs are logged through
:func:`safe_url`, which keeps the host and the resource type only.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from plugin.errors import FatalFhirError, FhirAuthError, FhirDeadlineError, TemporaryFhirError

log = logging.getLogger(__name__)

# Waits (seconds) before each retry of a temporary failure; the number of entries is the
# number of retries. About half a minute in total: enough to ride out an overloaded
# moment or a rolling restart of the EHR's FHIR facade, short enough that a real outage is
# reported instead of hidden. A server's own Retry-After replaces the wait when present.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)

# EHRs are busy production systems shared with clinicians: a handful of connections is
# what vendors (Epic, Oracle Health) ask of background clients, and more rarely helps
# because their FHIR facades queue requests per client anyway.
DEFAULT_MAX_CONNECTIONS = 4

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_DEADLINE_S = 300.0  # per call, retries and waits included
MAX_RETRY_AFTER_S = 3600.0  # never believe a server that asks us to wait longer

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "dxsafety-fhir-client"


class Auth(Protocol):
    """What :class:`FhirHttp` needs from an auth scheme (see :mod:`plugin.fhir.auth`)."""

    def headers(self, http: FhirHttp) -> dict[str, str]:
        """The Authorization header(s) to send; may fetch a token through ``http``."""

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401; True if a retry with new ones may help."""


def safe_url(url: str) -> str:
    """``host/path`` with ids and the query removed: fit for logs and error messages."""
    parts = urlsplit(url)
    kept = [
        s if (s[:1].isupper() or s.startswith("$") or s in ("fhir", "metadata")) else "…"
        for s in parts.path.split("/")
        if s
    ]
    query = "?…" if parts.query else ""
    return f"{parts.netloc}/{'/'.join(kept)}{query}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class FhirHttp:
    """A ``requests.Session`` with the retry and deadline policy described above.

    ``sleep`` and ``clock`` are injectable so tests run without waiting.
    """

    def __init__(
        self,
        *,
        auth: Auth | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.auth = auth
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.retry_delays = retry_delays
        self.max_connections = max_connections
        self.sleep = sleep
        self.clock = clock
        self.session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=max_connections, pool_maxsize=max_connections, pool_block=True
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        # urllib3 logs every request line at DEBUG, query string (patient ids) included;
        # `dxsafety -v` must not put those in logs, so its pool logger stays at INFO
        pool_log = logging.getLogger("urllib3.connectionpool")
        if pool_log.getEffectiveLevel() < logging.INFO:
            pool_log.setLevel(logging.INFO)

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        authenticate: bool = True,
        stream: bool = False,
        deadline_s: float | None = None,
    ) -> requests.Response:
        """Send with retries; return a response with status < 400 or raise (see module doc)."""
        deadline = self.clock() + (self.deadline_s if deadline_s is None else deadline_s)
        refreshed = False
        attempt = 0
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise FhirDeadlineError(
                    f"{method} {safe_url(url)}: no answer within the deadline", url=url
                )
            all_headers = dict(headers or {})
            if authenticate and self.auth is not None:
                all_headers.update(self.auth.headers(self))
            problem: str
            wait: float | None = None
            status: int | None = None
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    headers=all_headers,
                    data=data,
                    stream=stream,
                    timeout=(
                        min(self.connect_timeout_s, remaining),
                        min(self.read_timeout_s, remaining),
                    ),
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                problem = f"{type(exc).__name__}"
            else:
                status = resp.status_code
                if status < 400:
                    return resp
                if status == 401 and authenticate and self.auth is not None and not refreshed:
                    resp.close()
                    refreshed = True
                    if self.auth.invalidate():
                        log.info(
                            "%s %s: 401, retrying once with a new token", method, safe_url(url)
                        )
                        continue
                if status not in RETRY_STATUSES:
                    detail = outcome_text(resp)
                    resp.close()
                    error = FhirAuthError if status in (401, 403) else FatalFhirError
                    raise error(
                        f"{method} {safe_url(url)} failed with HTTP {status}"
                        + (f": {detail}" if detail else ""),
                        status=status,
                        url=url,
                    )
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                problem = f"HTTP {status}"
                resp.close()
            if attempt >= len(self.retry_delays):
                raise TemporaryFhirError(
                    f"{method} {safe_url(url)}: {problem}, still failing after {attempt} retries",
                    status=status,
                    url=url,
                )
            if wait is None:
                wait = self.retry_delays[attempt]
            wait = min(wait, MAX_RETRY_AFTER_S)
            if self.clock() + wait > deadline:
                raise FhirDeadlineError(
                    f"{method} {safe_url(url)}: {problem}; waiting {wait:.0f}s more would pass "
                    "the call's deadline",
                    status=status,
                    url=url,
                )
            log.warning(
                "%s %s: %s, retry %d in %.1fs", method, safe_url(url), problem, attempt + 1, wait
            )
            self.sleep(wait)
            attempt += 1

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
    ) -> dict[str, Any]:
        """GET a JSON object. A body that is not valid JSON (e.g. truncated) is fatal.

        A connection that drops while the body is read is a temporary error, retried as a
        whole by :meth:`request` (requests raises before anyone sees a partial body).
        """
        all_headers = {"Accept": "application/fhir+json", **(headers or {})}
        resp = self.request(
            "GET", url, params=params, headers=all_headers, authenticate=authenticate
        )
        return parse_json_object(resp.content, resp.url or url)


def parse_json_object(body: bytes, url: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FatalFhirError(
            f"GET {safe_url(url)}: the server sent invalid JSON ({len(body)} bytes; {exc})",
            url=url,
        ) from None
    if not isinstance(value, dict):
        raise FatalFhirError(f"GET {safe_url(url)}: expected a JSON object", url=url)
    return value


def outcome_text(resp: requests.Response) -> str:
    """The diagnostics of an OperationOutcome (or OAuth error) body, shortened."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if body.get("resourceType") == "OperationOutcome":
        texts = [
            i.get("diagnostics") or i.get("details", {}).get("text", "")
            for i in body.get("issue", [])
            if isinstance(i, dict)
        ]
        return "; ".join(t for t in texts if t)[:300]
    if "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}"[:300]
    return ""
