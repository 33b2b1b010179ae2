"""A hostile loopback HTTP server for the CDS fetch tests: it redirects, drips bytes,
sends huge bodies, and records every request (path, Authorization). 127.0.0.1 only."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # the service hanging up on us is the point of these tests


Behaviour = Callable[[BaseHTTPRequestHandler], None]


def redirect(location: str) -> Behaviour:
    def act(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return act


def drip(stop: threading.Event, every_s: float = 0.05, headers_too: bool = False) -> Behaviour:
    """A 200 whose bytes come one at a time (the headers too, with ``headers_too``)."""

    def act(h: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
        head += b"Content-Length: 100000\r\n\r\n"
        try:
            if headers_too:
                for byte in head:
                    if stop.wait(every_s):
                        return
                    h.wfile.write(bytes([byte]))
                    h.wfile.flush()
            else:
                h.wfile.write(head)
                h.wfile.flush()
            h.wfile.write(b'{"resourceType": "Bundle", "entry": [')
            while not stop.wait(every_s):
                h.wfile.write(b" ")
                h.wfile.flush()
        except OSError:
            return

    return act


def huge(size: int, declare: bool) -> Behaviour:
    """A 200 JSON body of ``size`` bytes, with or without Content-Length."""

    def act(h: BaseHTTPRequestHandler) -> None:
        body = b'{"resourceType": "Bundle", "type": "searchset", "x": "' + b"a" * size + b'"}'
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        if declare:
            h.send_header("Content-Length", str(len(body)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        try:
            h.wfile.write(body)
        except OSError:
            return

    return act


class Hostile:
    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization")))
                outer.behaviour(self)
                self.close_connection = True

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
