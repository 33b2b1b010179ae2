"""Issue 14 item 2: a jti is single use across every worker and host. The replay cache is
a table in the worklist database (unique insert that may only replace an expired row):
tested on SQLite and PostgreSQL, and live with ``dxsafety serve --workers 2`` plus a second
service process on the same database (before: 18/60 and 19/60 replays got 200)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from plugin.cds.replay import DbReplayCache
from plugin.worklist.store import Store
from tests.cds.helpers import ISS, REPO, Keys, bearer
from tests.cds.live import free_port, wait_for_discovery

PUBLIC = "http://cds.test"  # both processes sit behind one public URL (a load balancer)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'replay.db'}"
        return
    from tests.worklist.pg import create_database, postgres_server

    with postgres_server() as base:
        yield create_database(base, "replay")


def test_first_use_is_decided_by_the_database(db_url: str) -> None:
    store = Store(db_url)
    clock = [1000.0]
    a = DbReplayCache(lambda: store, clock=lambda: clock[0])
    b = DbReplayCache(lambda: store, clock=lambda: clock[0])  # another worker
    try:
        assert a.first_use(ISS, "j1", 1300.0)
        assert not b.first_use(ISS, "j1", 1300.0)
        assert not a.first_use(ISS, "j1", 1300.0)
        assert b.first_use("https://other.test", "j1", 1300.0)  # per issuer
        clock[0] = 1301.0  # the token expired: its jti may be forgotten
        assert b.first_use(ISS, "j1", 1600.0)
        assert not a.first_use(ISS, "j1", 1600.0)
        # racing threads on one jti: exactly one wins
        barrier = threading.Barrier(8)

        def race(_: int) -> bool:
            barrier.wait()
            return (a if _ % 2 else b).first_use(ISS, "race", 1600.0)

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(race, range(8))) == 1
    finally:
        a.close()
        b.close()
        store.close()


def _serve(port: int, db: str, issuers: Path, log: Path, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DXSAFETY_CDS_ISSUERS_FILE": str(issuers),
        "DXSAFETY_PUBLIC_BASE_URL": PUBLIC,
        "DXSAFETY_ENV": "test",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("dxsafety")), "serve", "--port", str(port),
             "--no-catalogue", "--rules", str(REPO / "rules"), "--database-url", db,
             "--workers", str(workers)],
            cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.slow
def test_replays_are_refused_across_workers_and_processes(tmp_path: Path, keys: Keys) -> None:
    import jwt

    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(
        yaml.safe_dump(
            {"issuers": [{"iss": ISS, "jwks": {"keys": [Keys.public_jwk(keys.es, "k", "ES384")]}}]}
        )
    )
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    Store(db).close()  # migrate once, before three processes open it
    ports = [free_port(), free_port()]
    procs = [
        _serve(ports[0], db, issuers, tmp_path / "a.log", workers=2),
        _serve(ports[1], db, issuers, tmp_path / "b.log", workers=1),
    ]
    try:
        for proc, port, name in zip(procs, ports, ("a", "b"), strict=True):
            wait_for_discovery(proc, port, tmp_path / f"{name}.log")
        bases = [f"http://127.0.0.1:{p}/cds-services" for p in ports]

        def token() -> str:
            import time

            now = int(time.time())
            claims = {"iss": ISS, "aud": f"{PUBLIC}/cds-services", "iat": now, "exp": now + 300,
                      "jti": uuid.uuid4().hex}  # fmt: skip
            return jwt.encode(claims, keys.es, algorithm="ES384", headers={"kid": "k"})

        def get(base: str, t: str) -> int:
            # a fresh connection each time: uvicorn's two workers share the port, so calls
            # land on either of them
            with requests.Session() as s:
                return s.get(base, headers=bearer(t), timeout=30).status_code

        tokens = [token() for _ in range(30)]
        # each token: once to A, then replayed to A (either worker) and to B, concurrently
        attempts = [(t, bases[i % 2]) for t in tokens for i in range(4)]
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda a: get(a[1], a[0]), attempts))
        by_token: dict[str, list[int]] = {}
        for (t, _), code in zip(attempts, codes, strict=True):
            by_token.setdefault(t, []).append(code)
        assert set(codes) <= {200, 401}, codes
        accepted = [c.count(200) for c in by_token.values()]
        assert accepted == [1] * len(tokens), accepted  # exactly one use per jti, 90 replays
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
