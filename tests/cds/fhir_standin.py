"""A loopback FHIR R4 stand-in: enough of a FHIR server for CDS prefetch call-backs.

Serves ``GET {base}/{Type}/{id}`` (read, 404 when absent) and ``GET {base}/{Type}?patient=x``
(searchset, paged by ``page_size`` with ``next`` links to itself). It checks the bearer
token when one is configured and records every request (path and Authorization header)
so tests can see what the service fetched and with which token. Runs in a thread on a
free 127.0.0.1 port; nothing leaves loopback.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the service's time budget) is expected, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FhirStandIn:
    def __init__(
        self,
        resources: list[dict[str, Any]],
        *,
        token: str | None = None,
        page_size: int = 50,
        delay_s: float = 0.0,
    ):
        self.token = token
        self.page_size = page_size
        self.delay_s = delay_s
        self.requests: list[tuple[str, str | None]] = []
        self.by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in resources:
            self.by_type[r["resourceType"]].append(r)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/fhir"

    def __enter__(self) -> FhirStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, resources: list[dict[str, Any]]) -> None:
        for r in resources:
            self.by_type[r["resourceType"]].append(r)

    def _search(self, rtype: str, query: dict[str, list[str]]) -> dict[str, Any]:
        patient = (query.get("patient") or [""])[0].removeprefix("Patient/")
        hits = [
            r
            for r in self.by_type.get(rtype, [])
            if (r.get("subject") or r.get("patient") or {}).get("reference") == f"Patient/{patient}"
        ]
        page = int((query.get("_page") or ["0"])[0])
        chunk = hits[page * self.page_size : (page + 1) * self.page_size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(hits),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in chunk],
        }
        if (page + 1) * self.page_size < len(hits):
            nxt = urlencode({"patient": patient, "_page": page + 1})
            bundle["link"] = [{"relation": "next", "url": f"{self.base_url}/{rtype}?{nxt}"}]
        return bundle

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _send(self, status: int, body: dict[str, Any] | None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if outer.delay_s:
                    threading.Event().wait(outer.delay_s)
                auth = self.headers.get("Authorization")
                outer.requests.append((self.path, auth))
                if outer.token is not None and auth != f"Bearer {outer.token}":
                    self._send(401, None)
                    return
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/fhir").strip("/").split("/")
                if len(path) == 2:
                    rtype, rid = path
                    found = next((r for r in outer.by_type.get(rtype, []) if r["id"] == rid), None)
                    if found is None:
                        self._send(
                            404,
                            {
                                "resourceType": "OperationOutcome",
                                "issue": [{"severity": "error", "code": "not-found"}],
                            },
                        )
                    else:
                        self._send(200, found)
                    return
                if len(path) == 1 and path[0]:
                    self._send(200, outer._search(path[0], parse_qs(parts.query)))
                    return
                self._send(404, None)

        return Handler
