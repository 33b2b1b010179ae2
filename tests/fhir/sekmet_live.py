"""Start a real SEKMET FHIR R4 server on loopback and load the Synthea bundles into it.

Shared by ``tests/fhir/conftest.py`` and ``bench/fetch_bench.py``. The server runs as a
subprocess (``sekmet serve -c settings.yaml``) with SQLite in a temp dir, the order
simulator off, and auth on: a static bearer token plus two SMART Backend Services clients
(RSA/RS384 and EC P-384/ES384) whose public keys are generated here.

The Synthea bundles are POSTed as transactions with each entry turned into
``PUT Type/id`` (update-as-create) instead of ``POST Type``, so the server keeps the ids
of the files and a fetch can be compared with the files resource by resource.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import tests.paths as shared_paths

SYNTHEA_DIR = shared_paths.DATA / "synthea-r4"
SEKMET = Path(sys.executable).with_name("sekmet")


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    token: str  # the static bearer token
    rsa_key: Path  # private key registered as client "dxsafety-rs"
    ec_key: Path  # private key registered as client "dxsafety-es"
    log_path: Path
    loaded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # patient id -> resources

    def stop(self) -> None:
        """Stop the server by its process id; wait, then kill if it does not exit."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, private: Path, public: Path
) -> None:
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def start_server(
    workdir: Path, *, token_lifetime: int = 3600, timeout_s: float = 60.0
) -> LiveServer:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    token = secrets.token_urlsafe(24)
    rsa_key, ec_key = workdir / "rs384.pem", workdir / "es384.pem"
    _write_key(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_key,
        workdir / "rs384.pub.pem",
    )
    _write_key(ec.generate_private_key(ec.SECP384R1()), ec_key, workdir / "es384.pub.pem")
    settings = {
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(workdir / "data"),
        "simulator": {"enabled": False},
        "log_inbound": False,
        "own_private_key_path": str(workdir / "no-such-key.pem"),
        "server_auth": {
            "types": ["bearer", "smart"],
            "tokens": [token],
            "token_lifetime": token_lifetime,
            "smart_clients": [
                {
                    "client_id": "dxsafety-rs",
                    "public_key_path": str(workdir / "rs384.pub.pem"),
                    "scopes": "system/*.read",
                },
                {
                    "client_id": "dxsafety-es",
                    "public_key_path": str(workdir / "es384.pub.pem"),
                    "scopes": "system/*.read",
                },
            ],
        },
    }
    config = workdir / "settings.json"  # JSON is YAML
    config.write_text(json.dumps(settings))
    log_path = workdir / "sekmet.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SEKMET), "serve", "-c", str(config)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(
        base_url=base_url,
        process=process,
        workdir=workdir,
        token=token,
        rsa_key=rsa_key,
        ec_key=ec_key,
        log_path=log_path,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SEKMET exited early:\n{log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{base_url}/metadata", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SEKMET did not answer /metadata within {timeout_s}s")


def as_put_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        entries.append(
            {**entry, "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}}
        )
    return {**bundle, "entry": entries}


def load_synthea(server: LiveServer, directory: Path = SYNTHEA_DIR) -> None:
    """POST each bundle as a transaction; remember each patient's resources."""
    for path in sorted(directory.glob("*.json")):
        bundle = json.loads(path.read_text())
        resp = requests.post(
            server.base_url,
            json=as_put_transaction(bundle),
            timeout=120,
            headers={**server.auth_header, "Content-Type": "application/fhir+json"},
        )
        if resp.status_code != 200:
            raise RuntimeError(f"loading {path.name}: HTTP {resp.status_code} {resp.text[:500]}")
        resources = [e["resource"] for e in bundle["entry"]]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        server.loaded[patient["id"]] = resources
