"""The pinned HTTPS connection of the CDS fetcher: the socket goes to the checked address,
TLS still verifies the certificate against the *name* of the fhirServer (SNI + hostname
check). A loopback HTTPS server with a throw-away certificate authority."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugin.cds.fetch import AddressPolicy, Deadline, FhirFetcher
from plugin.errors import TemporaryFhirError


def _cert(name: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server whose certificate names ``localhost``; the client context trusts
    only the throw-away CA."""
    tmp = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dxsafety test CA")])
    ca = _cert("dxsafety test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("localhost", key, ca_name, ca_key, ca=False)
    pem = Path(tmp / "server.pem")
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def do_GET(self) -> None:
            body = json.dumps({"resourceType": "Patient", "id": "p"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    try:
        yield server.server_address[1], client_ctx
    finally:
        server.shutdown()
        server.server_close()


def test_https_through_the_pinned_address_verifies_the_name(
    tls: tuple[int, ssl.SSLContext],
) -> None:
    port, ctx = tls
    base = f"https://localhost:{port}/fhir"
    policy = AddressPolicy.of([base])
    fetched = FhirFetcher(base, "t", Deadline.after(5), policy=policy, tls=ctx).query("Patient/p")
    assert fetched == {"resourceType": "Patient", "id": "p"}


def test_a_certificate_for_another_name_is_refused(tls: tuple[int, ssl.SSLContext]) -> None:
    port, ctx = tls
    base = f"https://127.0.0.1:{port}/fhir"  # the certificate names localhost, not the IP
    fetcher = FhirFetcher(base, "t", Deadline.after(5), policy=AddressPolicy.of([base]), tls=ctx)
    with pytest.raises(TemporaryFhirError, match="SSLCertVerificationError"):
        fetcher.query("Patient/p")
