"""CDS Hooks latency and throughput through real HTTP.

Starts ``dxsafety serve`` (uvicorn, one process) on a free loopback port with a throw-away
issuers file and database, then sends patient-view and encounter-discharge calls with full
prefetch for one patient of about 500 resources, at 1, 8 and 32 concurrent clients. Each call
carries a fresh ES384 JWT (signed before timing starts: every ``jti`` is single use).

Reports client-observed latency (p50/p95/p99), server time from the ``Server-Timing``
header (request arrival to response start, inside the server), and throughput. Runs the
parse modes given by ``--validate`` (default fast) so the cost of full FHIR validation of
the prefetch can be seen.

The machine is shared, so every level also measures a **floor** in the same run: the
cheapest authenticated call (discovery: JWT check and replay cache, no patient data) at the
same concurrency. ``ratio`` = hook server p95 / floor server p95 says how much the hook
itself costs on top of what the machine and the HTTP stack cost right now. Issue 14 goals:
CPU <= 5 ms per patient-view call, server p95 <= 50 ms at 8 clients with ``--workers 2``.

    nice .venv/bin/python bench/cds_bench.py [--requests 200] [--workers 2] [--validate fast]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import orjson
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cds import patients as P  # noqa: E402
from tests.cds.helpers import Keys  # noqa: E402
from tests.cds.live import free_port  # noqa: E402

ISS = "https://bench.ehr"
PID = "bench-patient"


def bench_patient(now: datetime) -> list[dict[str, Any]]:
    """~500 resources: an overdue positive FIT, atrial fibrillation, an ED dizziness visit
    being discharged, 20 clinic visits, 8 conditions and vital signs over two years."""
    out = P.fit_patient(PID, now, days_ago=90)
    ed = P.dizzy_patient(PID, now)
    out += [r for r in ed if r["resourceType"] != "Patient"]
    out += [
        P.encounter(PID, f"{PID}-visit-{i}", now - timedelta(days=30 * i + 7), 1) for i in range(20)
    ]
    out += [
        P.condition(PID, f"{PID}-cond-{i}", code, code, now - timedelta(days=400 + i))
        for i, code in enumerate(
            ["E11.9", "I10", "E78.5", "K21.9", "M54.5", "J45.909", "F41.1", "N18.3"]
        )
    ]
    out += P.padding(PID, now, 500 - len(out))
    return out


def start_server(
    tmp: Path, key: Any, validate: str, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuers = tmp / "issuers.yaml"
    issuers.write_text(
        yaml.safe_dump(
            {"issuers": [{"iss": ISS, "jwks": {"keys": [Keys.public_jwk(key, "bench", "ES384")]}}]}
        )
    )
    env = {
        **os.environ,
        "DXSAFETY_PUBLIC_BASE_URL": base,
        "DXSAFETY_CDS_ISSUERS_FILE": str(issuers),
        "DXSAFETY_DATABASE_URL": f"sqlite:///{tmp / f'db-{validate}.sqlite'}",
        "DXSAFETY_CDS_VALIDATE": validate,
        "DXSAFETY_ENV": "test",
    }
    log = (tmp / f"serve-{validate}.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dxsafety")),
            "serve",
            "--port",
            str(port),
            "--rules",
            str(REPO / "rules"),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/cds-services", timeout=1)
            return proc, base
        except requests.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError((tmp / f"serve-{validate}.log").read_text()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("dxsafety serve did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_level(url: str, body: bytes | None, tokens: list[str], clients: int) -> dict[str, Any]:
    """``body`` None: GET (the floor), else POST it."""
    per_client = [tokens[i::clients] for i in range(clients)]
    client_ms: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(mine: list[str]) -> None:
        session = requests.Session()
        local_c, local_s = [], []
        barrier.wait()
        for tok in mine:
            t0 = time.perf_counter()
            auth = {"Authorization": f"Bearer {tok}"}
            if body is None:
                r = session.get(url, headers=auth)
            else:
                r = session.post(
                    url, data=body, headers={**auth, "Content-Type": "application/json"}
                )
            dt = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                with lock:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                continue
            local_c.append(dt)
            timing = r.headers.get("server-timing", "")
            if "dur=" in timing:
                local_s.append(float(timing.split("dur=")[1]))
        with lock:
            client_ms.extend(local_c)
            server_ms.extend(local_s)

    threads = [threading.Thread(target=worker, args=(m,)) for m in per_client]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} failed calls, e.g. {errors[0]}")
    return {
        "clients": clients,
        "n": len(client_ms),
        "rps": len(client_ms) / elapsed,
        **{f"c{q}": pct(client_ms, q) for q in (50, 95, 99)},
        **{f"s{q}": pct(server_ms, q) for q in (50, 95, 99)},
    }


def stages(resources: list[dict[str, Any]], now: datetime, repeat: int = 30) -> None:
    """CPU time per stage of one patient-view call, in process (independent of machine load
    and HTTP): where the server time goes."""
    from plugin.cds import cards as card_mod
    from plugin.cds.advice import Advisor
    from plugin.cds.models import CdsResponse, HookRequest, PatientContext
    from plugin.cds.prefetch import PrefetchResolver
    from plugin.cds.schema import check_response
    from plugin.cds.services import SERVICES
    from plugin.rules import load_rules

    service = SERVICES["dxsafety-patient-view"]
    ctx = {"userId": "Practitioner/b", "patientId": PID}
    raw = orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "x",
            "context": ctx,
            "prefetch": P.full_prefetch(resources),
        }
    )
    ruleset = load_rules(REPO / "rules")
    # "fast path": skip the Observations no rule reads (plugin.cds.fastpath), the service's
    # default; "fast": every resource, fast validation; "full": every resource, R4B models.
    summaries: dict[str, list[str]] = {}
    for label, mode, fast_path in (
        ("fast path", "fast", True), ("fast", "fast", False), ("full", "full", False)
    ):  # fmt: skip
        advisor = Advisor.build(
            ruleset=ruleset,
            model_dir=None,
            base_url="http://b",
            lookback_days=365,
            risk_threshold=0.05,
            validate=mode,
            fast_path=fast_path,
        )
        times: dict[str, list[float]] = {}

        def clock(name: str, t0: float, times: dict[str, list[float]] = times) -> float:
            t1 = time.thread_time()
            times.setdefault(name, []).append((t1 - t0) * 1000)
            return t1

        for _ in range(repeat):
            t = time.thread_time()
            body = orjson.loads(raw)
            t = clock("json decode", t)
            request = HookRequest.model_validate(body)
            context = PatientContext.model_validate(request.context)
            t = clock("request models", t)
            got = PrefetchResolver(request, issuer=None, budget_s=5).gather(service.templates, PID)
            t = clock("prefetch checks", t)
            read = advisor.plan.relevant(got.resources) if advisor.plan else got.resources
            t = clock("skip unread", t)
            tl = advisor.timeline(read, PID)
            t = clock(f"timeline ({mode})", t)
            findings = advisor.open_findings(tl, now)
            t = clock("rules", t)
            built = [
                card_mod.finding_card(
                    f,
                    advisor._rule(f.rule_id),
                    base_url="http://b",
                    follow=advisor.followups.get(f.rule_id),
                    context=context.model_dump(),
                    now=now,
                )
                for f in findings
            ]
            out = CdsResponse(cards=built).to_json()
            t = clock("cards", t)
            summaries.setdefault(label, [c["summary"] for c in out["cards"]])
            assert check_response(out) == []
            orjson.dumps(out)
            t = clock("schema check + encode", t)
        total = sum(statistics.median(v) for v in times.values())
        parts = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in times.items())
        print(f"  {label}: {total:.1f} ms CPU median per call = {parts}")
    same = len({tuple(v) for v in summaries.values()}) == 1
    print(f"  cards identical in the three modes: {same}")
    if not same:
        raise SystemExit(f"the modes disagree: {summaries}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="calls per level and hook")
    parser.add_argument("--validate", default="fast", help="parse modes to run (fast,full)")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="dxsafety serve --workers")
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.now(UTC)
    resources = bench_patient(now)
    calls = {
        "patient-view": (
            "dxsafety-patient-view",
            {"userId": "Practitioner/b", "patientId": PID},
            P.full_prefetch(resources),
        ),
        "encounter-discharge": (
            "dxsafety-encounter-discharge",
            {"userId": "Practitioner/b", "patientId": PID, "encounterId": f"{PID}-ed"},
            P.full_prefetch(resources, encounter_id=f"{PID}-ed"),
        ),
    }
    levels = [int(x) for x in args.levels.split(",")]
    print(
        f"patient: {len(resources)} resources; {args.requests} calls per hook and level; "
        f"machine: {os.cpu_count()} cores (shared)"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("in-process CPU per stage, patient-view (ms, median of 30):")
    stages(resources, now)
    print(f"through HTTP, dxsafety serve --workers {args.workers}:")
    print(
        f"{'mode':5} {'hook':20} {'clients':>7} {'req/s':>7}  client p50/p95/p99 ms    "
        f"server p50/p95/p99 ms   cards  floor p95  ratio"
    )
    with tempfile.TemporaryDirectory() as tmpdir:
        for mode in args.validate.split(","):
            proc, base = start_server(Path(tmpdir), key, mode, args.workers)
            try:
                for hook, (service, ctx, prefetch) in calls.items():
                    body_obj = {
                        "hook": hook,
                        "hookInstance": str(uuid.uuid4()),
                        "context": ctx,
                        "prefetch": prefetch,
                    }
                    body = orjson.dumps(body_obj)
                    url = f"{base}/cds-services/{service}"

                    def sign(url: str = url) -> str:  # aud = the exact endpoint URL
                        t = int(time.time())
                        return jwt.encode(
                            {
                                "iss": ISS,
                                "aud": url,
                                "iat": t,
                                "exp": t + 600,
                                "jti": uuid.uuid4().hex,
                            },
                            key,
                            algorithm="ES384",
                            headers={"kid": "bench", "typ": "JWT"},
                        )

                    first = requests.post(
                        url,
                        data=body,
                        headers={
                            "Authorization": f"Bearer {sign()}",
                            "Content-Type": "application/json",
                        },
                    )
                    first.raise_for_status()
                    n_cards = len(first.json()["cards"])
                    run_level(url, body, [sign() for _ in range(20)], 1)  # warm-up
                    discovery = f"{base}/cds-services"
                    for clients in levels:
                        n = max(args.requests, clients)
                        floor = run_level(discovery, None, [sign(discovery) for _ in range(n)],
                                          clients)  # fmt: skip
                        r = run_level(url, body, [sign() for _ in range(n)], clients)
                        ratio = r["s95"] / max(floor["s95"], 0.01)
                        print(
                            f"{mode:5} {hook:20} {clients:7d} {r['rps']:7.1f}  "
                            f"{r['c50']:6.1f} {r['c95']:6.1f} {r['c99']:6.1f}      "
                            f"{r['s50']:6.1f} {r['s95']:6.1f} {r['s99']:6.1f}    {n_cards:5d}"
                            f"  {floor['s95']:8.1f}  {ratio:5.1f}"
                        )
                    print(f"      (request body {len(body) / 1024:.0f} KiB)")
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            log = (Path(tmpdir) / f"serve-{mode}.log").read_text()
            problems = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
            print(
                f"      server log: {len(problems)} error line(s)"
                + (f", first: {problems[0][:160]}" if problems else "")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
