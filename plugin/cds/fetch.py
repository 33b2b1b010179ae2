"""Call back the client's FHIR server for prefetch the client did not send.

Deliberately small, and built so that no client-named URL can make us misbehave:

* **one deadline per hook call** (``settings.cds_fetch_budget_s``, 2 s) covers every request
  and page, DNS and TLS included: each socket read waits at most for what is left, and a
  watchdog shuts every socket of the call when the deadline passes, so a server that drips
  a byte at a time cannot hold a worker past it;
* **one response-size cap per call** (``settings.cds_fetch_max_bytes``) over all pages;
* **the token goes only where the issuer allowed** (:meth:`Issuer.may_call`): ``next`` links
  and redirects are followed only while they stay on the same server, and the connection
  is pinned to the address that was checked, so DNS cannot be re-pointed between the check
  and the connect. Loopback, link-local, private and other non-public addresses are refused
  unless the issuer lists them explicitly (:class:`AddressPolicy`).

No retries: a CDS call is interactive, and the budget is better spent failing fast with a
412.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from plugin.errors import FatalFhirError, FhirDeadlineError, TemporaryFhirError

MAX_PAGES = 50  # a patient's search that pages further than this is not a CDS-sized query
MAX_REDIRECTS = 3
DEFAULT_MAX_BYTES = 20_000_000
ACCEPT = "application/fhir+json, application/json;q=0.9"
_CHUNK = 65_536

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Deadline:
    """The time and byte budget of one hook call, shared by every request it makes."""

    def __init__(self, at: float, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.at = at  # time.monotonic() value
        self.max_bytes = max_bytes
        self._read = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._timer: threading.Timer | None = None
        self.expired = False

    @classmethod
    def after(cls, seconds: float, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Deadline:
        return cls(time.monotonic() + seconds, max_bytes=max_bytes)

    def left(self) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0 or self.expired:
            raise FhirDeadlineError("the CDS fetch budget is spent")
        return remaining

    def count(self, n: int) -> None:
        with self._lock:
            self._read += n
            if self._read > self.max_bytes:
                raise FatalFhirError(f"FHIR responses over {self.max_bytes} bytes for one call")

    # --- watchdog: no blocking read outlives the deadline -------------------------------
    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                raise FhirDeadlineError("the CDS fetch budget is spent")
            self._sockets.add(sock)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._cut)
                self._timer.daemon = True
                self._timer.start()

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            socks, self._sockets = list(self._sockets), set()
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv in another thread
            except OSError:
                pass

    def close(self) -> None:
        """Stop the watchdog and cut whatever is still open (the call is over)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._cut()


def _ip(text: str) -> IPAddress:
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses we connect to: public ones, and non-public ones only when listed
    (an IP-literal or ``localhost`` ``fhir_servers`` entry, or a ``fhir_networks`` CIDR)."""

    listed: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, servers: Iterable[str], networks: Iterable[str] = ()) -> AddressPolicy:
        listed: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in networks]
        for entry in servers:
            host = urlsplit(entry).hostname or ""
            if host == "localhost":
                listed += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
                continue
            try:
                listed.append(ipaddress.ip_network(_ip(host)))
            except ValueError:
                continue  # a host name: its addresses must be public
        return cls(tuple(listed))

    def allows(self, ip: IPAddress) -> bool:
        if any(ip in net for net in self.listed if net.version == ip.version):
            return True
        return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """The addresses of ``host`` that ``policy`` allows; FatalFhirError when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        what = type(exc).__name__
        raise TemporaryFhirError(f"FHIR server name does not resolve: {what}") from exc
    found = [str(info[4][0]) for info in infos]
    allowed = [a for a in dict.fromkeys(found) if policy.allows(_ip(a))]
    if not allowed:
        raise FatalFhirError(
            "fhirServer resolves to a loopback, link-local, private or reserved address "
            "that the issuer does not list"
        )
    return allowed


def same_server(url: str, base: str) -> bool:
    """``url`` is on ``base``'s scheme, host and port, under its path."""
    u, b = urlsplit(url), urlsplit(base.rstrip("/") + "/")
    return (u.scheme, u.netloc) == (b.scheme, b.netloc) and (u.path + "/").startswith(b.path)


class FhirFetcher:
    """One hook call's view of the client's FHIR server (token held only for this call)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        deadline: Deadline,
        *,
        policy: AddressPolicy | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.base = base_url.rstrip("/")
        self.deadline = deadline
        self.policy = policy or AddressPolicy()
        self._tls = tls
        self._headers = {"Accept": ACCEPT, "Accept-Encoding": "identity"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        last: OSError | None = None
        for address in resolve(host, port, self.policy):
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
            try:
                self.deadline.watch(sock)
                sock.settimeout(self.deadline.left())
                sock.connect((address, port))
                conn = _pinned(scheme, host, port, sock, self._tls)
            except BaseException as exc:
                self.deadline.unwatch(sock)
                sock.close()
                if not isinstance(exc, OSError):  # ssl.SSLError is an OSError
                    raise
                last = exc
                continue
            if conn.sock is not sock:  # TLS: the wrapped socket now owns the descriptor
                self.deadline.unwatch(sock)
                self.deadline.watch(conn.sock)
            return conn
        if self.deadline.expired:
            raise FhirDeadlineError("FHIR server too slow for the CDS budget")
        raise TemporaryFhirError(f"FHIR server unreachable: {type(last).__name__}")

    def _exchange(self, url: str) -> tuple[int, str | None, bytes]:
        """One GET within the deadline and the size cap: (status, Location, body)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FatalFhirError("not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn = self._connect(parts.scheme, parts.hostname, port)
        sock = conn.sock
        response: http.client.HTTPResponse | None = None
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers=self._headers)
            response = conn.getresponse()
            declared = response.getheader("Content-Length")
            if declared is not None and declared.isdigit():
                if int(declared) > self.deadline.max_bytes:
                    raise FatalFhirError("FHIR response larger than the CDS size cap")
            body = bytearray()
            if response.status == 200:
                while True:
                    sock.settimeout(self.deadline.left())
                    chunk = response.read1(_CHUNK)
                    if not chunk:
                        break
                    self.deadline.count(len(chunk))
                    body += chunk
            return response.status, response.getheader("Location"), bytes(body)
        except TimeoutError as exc:
            raise FhirDeadlineError("FHIR server too slow for the CDS budget") from exc
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            if self.deadline.expired:
                raise FhirDeadlineError("FHIR server too slow for the CDS budget") from exc
            raise TemporaryFhirError(f"FHIR server unreachable: {type(exc).__name__}") from exc
        finally:
            if sock is not None:
                self.deadline.unwatch(sock)
            if response is not None:
                response.close()
            conn.close()

    def _get(self, url: str) -> dict[str, Any] | None:
        for _ in range(MAX_REDIRECTS + 1):
            if not same_server(url, self.base):
                raise FatalFhirError("refusing to send the FHIR token to another server", url=None)
            status, location, body = self._exchange(url)
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)  # checked against the server at the loop's top
                continue
            return _resource(status, body)
        raise FatalFhirError("too many redirects")

    def query(self, relative: str) -> dict[str, Any] | None:
        """A read (resource or None) or a search (one Bundle page)."""
        return self._get(f"{self.base}/{relative.lstrip('/')}")

    def next_pages(self, bundle: dict[str, Any]) -> list[dict[str, Any]]:
        """The entries of the pages after ``bundle`` (which the client or we fetched)."""
        entries: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            url = next_link(bundle)
            if url is None:
                return entries
            page = self._get(url)
            if page is None or page.get("resourceType") != "Bundle":
                raise FatalFhirError("a next page is not a Bundle")
            found = page.get("entry") or []
            if not isinstance(found, list):
                raise FatalFhirError("a next page's entry is not a list")
            entries.extend(e for e in found if isinstance(e, dict))
            bundle = page
        raise FatalFhirError(f"more than {MAX_PAGES} pages")


def _resource(status: int, body: bytes) -> dict[str, Any] | None:
    if status in (404, 410):
        return None
    if status >= 500 or status == 429:
        raise TemporaryFhirError("FHIR server error", status=status)
    if status != 200:
        raise FatalFhirError("FHIR server refused", status=status)
    try:
        value = json.loads(body.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        raise FatalFhirError("FHIR server sent no JSON", status=200) from exc
    if not isinstance(value, dict) or "resourceType" not in value:
        raise FatalFhirError("FHIR server sent no resource", status=200)
    return value


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection over a socket we already connected to the checked address."""

    def __init__(self, host: str, port: int, sock: socket.socket):
        super().__init__(host, port)
        self.sock = sock

    def connect(self) -> None:  # the socket is connected already
        return


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, sock: socket.socket, tls: ssl.SSLContext):
        super().__init__(host, port, context=tls)
        self.sock = tls.wrap_socket(sock, server_hostname=host)

    def connect(self) -> None:
        return


def _pinned(
    scheme: str, host: str, port: int, sock: socket.socket, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, port, sock, tls or ssl.create_default_context())
    return _PinnedHTTP(host, port, sock)


def next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link") or []
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None
