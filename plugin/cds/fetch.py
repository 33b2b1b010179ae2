"""Call back the client's FHIR server for prefetch the client did not send.

Deliberately small: GET ``{fhirServer}/{query}`` with the ``fhirAuthorization`` bearer
token, follow ``Bundle.link[next]`` while the pages stay on the same server (the token
must never go anywhere else), and stop at a deadline, the service's time budget
(``settings.cds_fetch_budget_s``) shared by every query of one hook call. No retries:
a CDS call is interactive, and the budget is better spent failing fast with a 412.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from plugin.errors import FatalFhirError, FhirDeadlineError, TemporaryFhirError

MAX_PAGES = 50  # a patient's search that pages further than this is not a CDS-sized query
ACCEPT = "application/fhir+json, application/json;q=0.9"


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise FhirDeadlineError("the CDS fetch budget is spent")
        return remaining


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
        session: requests.Session | None = None,
    ):
        self.base = base_url.rstrip("/")
        self.deadline = deadline
        self._session = session or requests.Session()
        self._headers = {"Accept": ACCEPT}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _get(self, url: str) -> dict[str, Any] | None:
        if not same_server(url, self.base):
            raise FatalFhirError("refusing to send the FHIR token to another server", url=None)
        try:
            response = self._session.get(
                url, headers=self._headers, timeout=self.deadline.left(), allow_redirects=False
            )
        except requests.Timeout as exc:
            raise FhirDeadlineError("FHIR server too slow for the CDS budget") from exc
        except requests.RequestException as exc:
            raise TemporaryFhirError(f"FHIR server unreachable: {type(exc).__name__}") from exc
        if response.status_code in (404, 410):
            return None
        if response.status_code >= 500 or response.status_code == 429:
            raise TemporaryFhirError("FHIR server error", status=response.status_code)
        if response.status_code != 200:
            raise FatalFhirError("FHIR server refused", status=response.status_code)
        try:
            body = response.json()
        except ValueError as exc:
            raise FatalFhirError("FHIR server sent no JSON", status=200) from exc
        if not isinstance(body, dict) or "resourceType" not in body:
            raise FatalFhirError("FHIR server sent no resource", status=200)
        return body

    def query(self, relative: str) -> dict[str, Any] | None:
        """A read (resource or None) or a search (Bundle with every page's entries)."""
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
            entries.extend(e for e in page.get("entry") or [] if isinstance(e, dict))
            bundle = page
        raise FatalFhirError(f"more than {MAX_PAGES} pages")


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None
