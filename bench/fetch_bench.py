"""Throughput of the FHIR client against a local SEKMET server, with the server's own
time to serve the same requests as the baseline.

    .venv/bin/python bench/fetch_bench.py [--repeat 5]

Starts SEKMET on loopback (tests/fhir/sekmet_live.py), loads the 20 Synthea bundles, then:

* per-patient fetch of all patients, once with ``$everything`` and once with type-level
  searches (``_count=200``); the URLs the client requested are then replayed with a bare
  ``requests.Session`` (no retries, no paging logic, no parsing beyond reading the body):
  that replay is the server's own time to serve the same searches (a second replay also
  parses each body, to separate JSON decoding from the client's own overhead);
* a Bulk ``$export`` of the resource types dxsafety reads, against a bare kick-off /
  poll (honouring the same Retry-After) / download loop.

Prints resources/s and the client/baseline ratio (median of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fhir"))
from sekmet_live import LiveServer, load_synthea, start_server

from plugin.fhir.auth import BearerAuth
from plugin.fhir.bulk import BulkExporter, ExportProgress
from plugin.fhir.client import RESOURCE_TYPES, FhirClient


def fetch_all(server: LiveServer, strategy: str) -> tuple[float, int, list[str]]:
    urls: list[str] = []
    with FhirClient(server.base_url, auth=BearerAuth(server.token), strategy=strategy) as c:
        c.capabilities  # noqa: B018 - /metadata is read once per client, not per patient
        c.http.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
        start = time.perf_counter()
        n = sum(len(c.fetch_patient(pid)) for pid in server.loaded)
        return time.perf_counter() - start, n, urls


def replay(server: LiveServer, urls: list[str], *, parse: bool = False) -> float:
    with requests.Session() as s:
        s.headers.update(server.auth_header)
        start = time.perf_counter()
        for url in urls:
            body = s.get(url, timeout=60).content
            if parse:
                orjson.loads(body)
        return time.perf_counter() - start


def bulk_client(server: LiveServer) -> tuple[float, float, int]:
    """(whole export, download phase only, resources)."""
    marks: dict[str, float] = {}

    def progress(p: ExportProgress) -> None:
        marks.setdefault(p.phase, time.perf_counter())

    with (
        tempfile.TemporaryDirectory() as tmp,
        FhirClient(server.base_url, auth=BearerAuth(server.token)) as c,
    ):
        start = time.perf_counter()
        result = BulkExporter(c, progress=progress).export(Path(tmp), types=RESOURCE_TYPES)
        end = time.perf_counter()
        return end - start, marks["done"] - marks["downloading"], sum(result.counts.values())


def bulk_raw(server: LiveServer) -> float:
    with requests.Session() as s:
        s.headers.update(server.auth_header)
        start = time.perf_counter()
        kick = s.get(
            f"{server.base_url}/$export",
            params={"_type": ",".join(RESOURCE_TYPES)},
            headers={"Prefer": "respond-async"},
            timeout=60,
        )
        status = kick.headers["Content-Location"]
        while True:
            resp = s.get(status, timeout=60)
            if resp.status_code == 200:
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        for out in resp.json()["output"]:
            s.get(out["url"], timeout=60).content  # noqa: B018
        elapsed = time.perf_counter() - start
        s.delete(status, timeout=60)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        server = start_server(Path(tmp))
        try:
            print(f"SEKMET up in {time.perf_counter() - t0:.1f}s at {server.base_url}")
            t0 = time.perf_counter()
            load_synthea(server)
            total = sum(len(v) for v in server.loaded.values())
            print(
                f"loaded {len(server.loaded)} Synthea bundles ({total} resources) "
                f"in {time.perf_counter() - t0:.1f}s\n"
            )
            for strategy in ("everything", "search"):
                _, n, urls = fetch_all(server, strategy)  # warm-up (server caches), discarded
                client_runs, raw_runs, parsed_runs = [], [], []
                for _ in range(args.repeat):  # interleaved, so all see the same machine load
                    client_runs.append(fetch_all(server, strategy)[0])
                    raw_runs.append(replay(server, urls))
                    parsed_runs.append(replay(server, urls, parse=True))
                client_s, raw_s = statistics.median(client_runs), statistics.median(raw_runs)
                parsed_s = statistics.median(parsed_runs)
                print(
                    f"per-patient fetch ({strategy:10s}): {n} resources, {len(urls)} requests, "
                    f"client {client_s:.2f}s = {n / client_s:,.0f} res/s; server-only replay "
                    f"{raw_s:.2f}s = {n / raw_s:,.0f} res/s; client/server {client_s / raw_s:.2f}x "
                    f"(replay + JSON parse {parsed_s:.2f}s: client/that {client_s / parsed_s:.2f}x)"
                )
            client_runs, raw_runs, download_runs = [], [], []
            for _ in range(args.repeat):
                elapsed, downloading, n = bulk_client(server)
                client_runs.append(elapsed)
                download_runs.append(downloading)
                raw_runs.append(bulk_raw(server))
            client_s, raw_s = statistics.median(client_runs), statistics.median(raw_runs)
            download_s = statistics.median(download_runs)
            print(
                f"bulk $export (8 types)        : {n} resources, client {client_s:.2f}s = "
                f"{n / client_s:,.0f} res/s; bare kick-off/poll/download {raw_s:.2f}s = "
                f"{n / raw_s:,.0f} res/s; client/bare {client_s / raw_s:.2f}x; client download "
                f"phase alone {download_s:.2f}s = {n / download_s:,.0f} res/s"
            )
            print(
                "\n(SEKMET holds every export at least 1 s before it reports completion, "
                "so Bulk figures at this size measure mostly that wait.)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
