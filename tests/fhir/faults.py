"""A small loopback proxy in front of the live SEKMET server that injects faults.

Requests are forwarded to SEKMET and its answer is passed back with SEKMET's own URLs
rewritten to the proxy's, so paging goes through the proxy too. A test queues faults;
each applies once to the next request whose path and query contain its ``match`` text
(``*`` separates several texts that must all appear):

* ``status``   -- answer with an HTTP status (and headers) instead of forwarding;
* ``reset``    -- send the headers and half the body, then drop the connection;
* ``truncate`` -- a complete HTTP response whose JSON body is cut in half;
* ``loop``     -- forward, but point the page's ``next`` link back at this same page;
* ``rewind``   -- forward, but point the page's ``next`` link back at the first page
                  (``_offset=0``): a loop two pages long;
* ``stall``    -- wait ``seconds`` before answering (longer than the client's read timeout).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass
class Fault:
    kind: str  # status | reset | truncate | loop | stall
    match: str = ""
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")  # http://127.0.0.1:PORT/fhir
        self.faults: list[Fault] = []
        self.requests: list[str] = []  # path?query of every request seen
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.active = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with proxy.lock:
                    proxy.active += 1
                try:
                    proxy.handle(self)
                finally:
                    with proxy.lock:
                        proxy.active -= 1
                        proxy.idle.notify_all()

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # a client that gave up on a stalled answer closed its end: expected here
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no request is being handled (e.g. stalled ones the client gave up on)."""
        with self.lock:
            self.idle.wait_for(lambda: self.active == 0, timeout=timeout)

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take(self, path: str) -> Fault | None:
        with self.lock:
            self.requests.append(path)
            for i, fault in enumerate(self.faults):
                if all(part in path for part in fault.match.split("*")):
                    return self.faults.pop(i)
        return None

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        fault = self._take(h.path)
        if fault and fault.kind == "status":
            body = json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode()
            h.send_response(fault.status)
            for k, v in fault.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if fault and fault.kind == "stall":
            time.sleep(fault.seconds)
        upstream_path = h.path.removeprefix("/fhir")
        resp = requests.get(
            self.upstream + upstream_path,
            headers={
                k: v
                for k, v in h.headers.items()
                if k.lower() in ("authorization", "accept", "prefer", "range")
            },
            timeout=60,
        )
        body = resp.content.replace(self.upstream.encode(), self.base_url.encode())
        if fault and fault.kind in ("loop", "rewind"):
            page = json.loads(body)
            for link in page.get("link", []):
                if link["relation"] == "next" and fault.kind == "loop":
                    link["url"] = f"http://127.0.0.1:{self.server.server_port}{h.path}"
                elif link["relation"] == "next":
                    link["url"] = re.sub(r"_offset=\d+", "_offset=0", link["url"])
            body = json.dumps(page).encode()
        h.send_response(resp.status_code)
        h.send_header("Content-Type", resp.headers.get("Content-Type", "application/fhir+json"))
        for name in ("Content-Location", "Retry-After", "X-Progress"):  # Bulk export headers
            if name in resp.headers:
                value = resp.headers[name].replace(self.upstream, self.base_url)
                h.send_header(name, value)
        if fault and fault.kind == "truncate":
            body = body[: len(body) // 2]
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if fault and fault.kind == "reset":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # the peer sees the connection drop mid-body
            return
        h.wfile.write(body)
