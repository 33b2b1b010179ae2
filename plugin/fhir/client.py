"""Read one patient's record from a live FHIR R4 server.

:class:`FhirClient` reads the server's CapabilityStatement (``/metadata``) once and picks
how to fetch a patient:

* ``Patient/{id}/$everything`` when the server offers it and no time range is given (one
  paged call instead of eight searches);
* otherwise one type-level search per resource type (``patient=``, ``date=ge`` where the
  type has a clinical date, ``_count``), with ``Condition:patient`` ``_include``\\ d so the
  Patient comes back with the conditions and needs no separate read.

Every search follows ``Bundle.link[rel=next]`` to the end. A next link that points back
to a page already read (a server paging bug) or to another host (which would receive our
token) is a :class:`FatalFhirError`, never an endless loop. Resources are de-duplicated
by type and id (``_include``\\ d ones repeat across pages).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests

from plugin.errors import FatalFhirError
from plugin.fhir import resource_types
from plugin.fhir.capabilities import Capabilities, ServerType
from plugin.fhir.http import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RETRY_DELAYS,
    Auth,
    FhirHttp,
    safe_url,
)

log = logging.getLogger(__name__)

# What the rules and the ranker read, in fetch order (see plugin/fhir/resource_types.py).
RESOURCE_TYPES: tuple[str, ...] = resource_types.patient_types()
# The search parameter that carries each type's clinical date, for ``since``/``until``
# (Condition has none: conditions are always read in full).
DATE_PARAMS: Mapping[str, str] = resource_types.date_params()
# (type, the search parameter naming the patient) of each type-level search, in order.
_SEARCHES: tuple[tuple[str, str], ...] = tuple(
    (t.name, t.patient_param) for t in resource_types.searched_types() if t.patient_param
)
# The Observation categories Epic documents an Observation.Search API for (Labs, Vitals,
# Social History); asked one by one because Epic requires a category on every search.
EPIC_OBSERVATION_CATEGORIES = ("laboratory", "vital-signs", "social-history")
DEFAULT_PAGE_SIZE = 200
MAX_PAGES = 100_000  # a backstop far above any real result; loops are caught earlier

Strategy = Literal["auto", "everything", "search"]


class FhirClient:
    """A FHIR R4 REST client for one server. Use as a context manager::

    with FhirClient("https://ehr.example.org/fhir", auth=BearerAuth(token)) as client:
        resources = client.fetch_patient("123", since=date(2024, 1, 1))
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 60.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        deadline_s: float = DEFAULT_DEADLINE_S,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        page_size: int = DEFAULT_PAGE_SIZE,
        strategy: Strategy = "auto",
        http: FhirHttp | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or FhirHttp(
            auth=auth,
            read_timeout_s=timeout,
            deadline_s=deadline_s,
            retry_delays=retry_delays,
            max_connections=max_connections,
        )
        self.page_size = page_size
        self.strategy: Strategy = strategy
        self._capabilities: Capabilities | None = None
        self.pages_read = 0

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def capabilities(self) -> Capabilities:
        """The server's capabilities, read from ``/metadata`` on first use."""
        if self._capabilities is None:
            statement = self.http.get_json(f"{self.base_url}/metadata", headers=None)
            self._capabilities = Capabilities.from_statement(statement)
            log.info(
                "FHIR server %s: type %s, $everything %s, $export %s",
                safe_url(self.base_url),
                self._capabilities.server_type.value,
                self._capabilities.everything,
                sorted(self._capabilities.export),
            )
        return self._capabilities

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- paging -----------------------------------------------------------------------------
    def iter_pages(
        self, path_or_url: str, params: list[tuple[str, str]] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each Bundle page of a search, following ``link[rel=next]`` to the end."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        url = requests.Request("GET", url, params=params or []).prepare().url or url
        origin = urlsplit(self.base_url)[:2]
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self.http.get_json(url)
            self.pages_read += 1
            if page.get("resourceType") != "Bundle":
                raise FatalFhirError(
                    f"GET {safe_url(url)}: expected a Bundle, got "
                    f"{page.get('resourceType') or 'no resourceType'}",
                    url=url,
                )
            yield page
            seen.add(url)
            next_url = next(
                (
                    link.get("url")
                    for link in page.get("link") or []
                    if link.get("relation") == "next" and link.get("url")
                ),
                None,
            )
            if next_url is None:
                return
            next_url = urljoin(url, next_url)
            if urlsplit(next_url)[:2] != origin:
                raise FatalFhirError(
                    f"a next link of {safe_url(url)} points to another server "
                    f"({urlsplit(next_url).netloc}); refusing to send our credentials there",
                    url=next_url,
                )
            if next_url in seen:
                raise FatalFhirError(
                    f"the server's paging loops: the next link of {safe_url(url)} points back "
                    f"to a page already read (after {len(seen)} pages)",
                    url=next_url,
                )
            url = next_url
        raise FatalFhirError(f"{safe_url(url)}: more than {MAX_PAGES} pages")

    def search(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every resource of every page of a search (matches and includes, in page order)."""
        for page in self.iter_pages(path, params):
            for entry in page.get("entry") or []:
                resource = entry.get("resource")
                if isinstance(resource, dict) and resource.get("resourceType"):
                    yield resource

    # --- one patient ------------------------------------------------------------------------
    def choose_strategy(
        self, since: date | datetime | None, until: date | datetime | None = None
    ) -> Literal["everything", "search"]:
        if self.strategy != "auto":
            return self.strategy
        # $everything's date filters (start/end) are unevenly implemented, so with a window
        # the type-level searches, whose date= semantics are standard, are used instead.
        ranged = since is not None or until is not None
        return "everything" if not ranged and self.capabilities.everything else "search"

    def fetch_patient(
        self,
        patient_id: str,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The patient and their resources of :data:`RESOURCE_TYPES`, each once.

        ``since`` and ``until`` limit dated resources (see :data:`DATE_PARAMS`) to those on
        or after ``since`` and on or before ``until`` (the server's ``ge``/``le``: a period
        counts when it overlaps); the Patient and all Conditions are always returned, and
        a type whose date parameter the server does not list is read in full (more data,
        never less).
        """
        if not patient_id or "/" in patient_id or "?" in patient_id:
            raise FatalFhirError("a patient id must be a plain FHIR id")
        found = Deduplicator()
        if self.choose_strategy(since, until) == "everything":
            searches = [(f"Patient/{patient_id}/$everything", [("_count", str(self.page_size))])]
        else:
            searches = self.search_plan(patient_id, since, until)
        others = 0
        for path, params in searches:
            for resource in self.search(path, params):
                if resource["resourceType"] not in RESOURCE_TYPES:
                    continue
                if belongs_to(resource, patient_id):
                    found.add(resource)
                else:
                    others += 1
        if others:
            # $everything also returns what the patient's resources reference, which can be
            # other patients (Group members, Patient.link); they are not this record
            log.info("skipped %d resources of other patients in a patient fetch", others)
        if not found.has("Patient", patient_id):
            found.add(self.http.get_json(self.url(f"Patient/{patient_id}")))
        return found.resources()

    def search_plan(
        self,
        patient_id: str,
        since: date | datetime | None,
        until: date | datetime | None = None,
    ) -> list[tuple[str, list[tuple[str, str]]]]:
        """The type-level searches for one patient: ``[(type, params), ...]``."""
        caps = self.capabilities
        plan = []
        for rtype, patient_param in _SEARCHES:
            params = [(patient_param, patient_id), ("_count", str(self.page_size))]
            date_param = DATE_PARAMS.get(rtype)
            if date_param and caps.supports(rtype, date_param):
                if since is not None:
                    params.append((date_param, f"ge{since.isoformat()}"))
                if until is not None:
                    params.append((date_param, f"le{until.isoformat()}"))
            if rtype == "Condition" and "Condition:patient" in caps.includes.get(rtype, ()):
                params.append(("_include", "Condition:patient"))  # saves the Patient read
            if rtype == "Observation" and caps.server_type is ServerType.EPIC:
                # Epic refuses Observation searches without a category (or code)
                plan += [(rtype, [*params, ("category", c)]) for c in EPIC_OBSERVATION_CATEGORIES]
                continue
            plan.append((rtype, params))
        return plan


def belongs_to(resource: Mapping[str, Any], patient_id: str) -> bool:
    """Is this resource the patient, or about the patient (``subject``/``patient``)?

    A resource with no subject at all is kept: the server returned it for this patient.
    """
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference")
    if not isinstance(ref, str) or not ref:
        return True
    ref = ref.split("/_history")[0]
    return ref == f"Patient/{patient_id}" or ref.endswith(f"/Patient/{patient_id}")


class Deduplicator:
    """Keeps one copy of each resource by type/id; a newer ``meta.lastUpdated`` wins."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, resource: dict[str, Any]) -> bool:
        key = (resource.get("resourceType", ""), resource.get("id", ""))
        old = self._by_key.get(key)
        if old is not None and _updated(old) >= _updated(resource):
            return False
        self._by_key[key] = resource
        return old is None

    def has(self, rtype: str, rid: str) -> bool:
        return (rtype, rid) in self._by_key

    def resources(self) -> list[dict[str, Any]]:
        return list(self._by_key.values())


def _updated(resource: Mapping[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("lastUpdated") or "")
