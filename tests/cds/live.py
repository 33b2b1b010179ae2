"""Run the app under a real uvicorn on a free loopback port (a thread), for HTTP tests."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_discovery(
    proc: subprocess.Popen[bytes], port: int, log: Path, *, allowance: float = 60
) -> requests.Response:
    """GET /cds-services from a ``dxsafety serve`` process once it listens. ``allowance``
    is a start-up allowance, not a performance check; the server's log is shown if it dies."""
    deadline = time.monotonic() + allowance
    while True:
        try:
            return requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=5)
        except requests.ConnectionError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
