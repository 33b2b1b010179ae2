"""Prefetch, exactly as the spec says (2.0 §"Prefetch", §"Providing FHIR Resources").

For each template key of the service:

* **present** (a resource or a Bundle): use it; if the client paginated (``next`` link), fetch
  the remaining pages from ``fhirServer`` with the ``fhirAuthorization`` token;
* **null**: the client ran the query and found nothing; do not re-query;
* **an OperationOutcome**: the client hit an error; re-querying would most likely fail the
  same way, and rules evaluated on partial data would report false "no follow-up" findings,
  so the call fails with 412 (HAPI's ``CdsPrefetchFailureMode.FAIL``);
* **absent**: fetch it from ``fhirServer`` (in parallel, within ``settings.cds_fetch_budget_s``
  for the whole call), only when the issuer lists that server (deny by default).

Data that is needed and cannot be had raises :class:`PrefetchUnavailable` (412). Resources
that name another patient are dropped: a card must never be built from someone else's data.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from plugin.cds.fetch import DEFAULT_MAX_BYTES, AddressPolicy, Deadline, FhirFetcher, next_link
from plugin.cds.issuers import Issuer
from plugin.cds.models import HookRequest
from plugin.errors import FhirDeadlineError, FhirError, PrefetchTimeout, PrefetchUnavailable
from plugin.fhir import resource_types

_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
MAX_PARALLEL_FETCHES = 4  # EHR FHIR servers are busy; a few concurrent searches per call

FetcherFactory = Callable[[str, str | None, Deadline, AddressPolicy], FhirFetcher]
JOIN_SLACK_S = 0.05  # past the deadline, the watchdog has cut every socket of the call


def _default_factory(
    base: str, token: str | None, deadline: Deadline, policy: AddressPolicy
) -> FhirFetcher:
    return FhirFetcher(base, token, deadline, policy=policy)


def patient_templates() -> dict[str, str]:
    """The templates of a patient's record: one per type the table marks as prefetched.

    Inside the spec's recommended query subset: an instance read or a type-level search by
    patient reference (the table's patient search parameter), without date filters.
    """
    templates: dict[str, str] = {}
    for rtype in resource_types.TYPES:
        if rtype.prefetch is None:
            continue
        query = rtype.prefetch.query
        if query is None:
            if rtype.patient_param is None:
                raise ValueError(
                    f"{rtype.name}: a prefetched type needs a query or a patient_param"
                )
            query = f"{rtype.name}?{rtype.patient_param}={{{{context.patientId}}}}"
        templates[rtype.prefetch.key] = query
    return templates


PATIENT_TEMPLATES: dict[str, str] = patient_templates()
ENCOUNTER_TEMPLATES: dict[str, str] = {
    **PATIENT_TEMPLATES,
    "encounter": "Encounter/{{context.encounterId}}",
}


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fill ``{{context.x}}`` tokens (first-level primitive context fields only)."""

    def value(match: re.Match[str]) -> str:
        v = context.get(match.group(1))
        if not isinstance(v, str | int | float) or isinstance(v, bool) or v == "":
            raise PrefetchUnavailable(f"context.{match.group(1)} is needed for prefetch")
        return quote(str(v), safe="")

    return _TOKEN.sub(value, template)


@dataclass(frozen=True, slots=True, kw_only=True)
class Gathered:
    resources: list[dict[str, Any]]
    patient_found: bool
    fetched_keys: tuple[str, ...]  # keys we fetched ourselves (for logs and tests)


def _refers_to_other_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") != patient_id
    for field in ("subject", "patient"):
        ref = resource.get(field)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            if ref["reference"] == f"Patient/{patient_id}":  # the usual case, decided at once
                continue
            tail = ref["reference"].rstrip("/").split("/")[-2:]
            if tail[0] == "Patient" and tail[-1] != patient_id:
                return True
    return False


def _entries(bundle: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    found = bundle.get("entry")
    if found is None:
        return []
    if not isinstance(found, list):
        raise PrefetchUnavailable(f"prefetch '{key}': Bundle.entry is not a list", key=key)
    out = []
    for entry in found:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        if not isinstance(entry["resource"].get("resourceType"), str):
            continue  # not a FHIR resource: nothing the timeline could read
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue  # search warnings, not data
        if entry["resource"].get("resourceType") == "OperationOutcome":
            continue
        out.append(entry["resource"])
    return out


class PrefetchResolver:
    def __init__(
        self,
        request: HookRequest,
        *,
        issuer: Issuer | None,
        budget_s: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fetcher_factory: FetcherFactory | None = None,
        require_https: bool = False,
    ):
        self.request = request
        self.require_https = require_https
        self.issuer = issuer
        self.budget_s = budget_s
        self.deadline = Deadline.after(budget_s, max_bytes=max_bytes)
        self._factory = fetcher_factory or _default_factory

    def _fetcher(self, key: str) -> FhirFetcher:
        server = self.request.fhirServer
        if not server:
            raise PrefetchUnavailable(
                f"prefetch '{key}' is missing and there is no fhirServer", key=key
            )
        if self.require_https and not server.lower().startswith("https://"):
            raise PrefetchUnavailable(
                f"prefetch '{key}' is missing and fhirServer is not https (required in production)",
                key=key,
            )
        if self.issuer is None or not self.issuer.may_call(server):
            # deny by default: no allowlist entry, no call (and so no token sent anywhere)
            raise PrefetchUnavailable(
                f"prefetch '{key}' is missing and fhirServer is not on this client's "
                "fhir_servers allowlist; send the prefetch or have the server listed",
                key=key,
            )
        auth = self.request.fhirAuthorization
        token = auth.access_token.get_secret_value() if auth is not None else None
        return self._factory(server, token, self.deadline, self.issuer.address_policy())

    def _from_value(self, key: str, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise PrefetchUnavailable(f"prefetch '{key}' is not a FHIR resource", key=key)
        if value["resourceType"] == "OperationOutcome":
            raw = value.get("issue")
            issues = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
            raise PrefetchUnavailable(
                f"the client reported an error for prefetch '{key}'", key=key, client_issues=issues
            )
        if value["resourceType"] != "Bundle":
            return [value]
        resources = _entries(value, key)
        if next_link(value) is not None:
            try:
                pages = self._fetcher(key).next_pages(value)
            except FhirError as exc:
                what = f"cannot follow the pages of prefetch '{key}'"
                raise self._unavailable(what, key, exc) from exc
            resources.extend(_entries({"entry": pages}, key))
        return resources

    def _unavailable(self, what: str, key: str, exc: FhirError) -> PrefetchUnavailable:
        if isinstance(exc, FhirDeadlineError) or self.deadline.expired:
            return PrefetchTimeout(
                f"{what}: not read within the {self.budget_s:g} s deadline", key=key
            )
        return PrefetchUnavailable(f"{what}: {exc}", key=key)

    def _fetch(self, key: str, query: str) -> list[dict[str, Any]]:
        fetcher = self._fetcher(key)
        try:
            value = fetcher.query(query)
        except FhirError as exc:
            raise self._unavailable(f"cannot fetch prefetch '{key}'", key, exc) from exc
        return self._from_value(key, value)

    def gather(self, templates: Mapping[str, str], patient_id: str) -> Gathered:
        prefetch = self.request.prefetch or {}
        missing = {
            k: render(t, self.request.context) for k, t in templates.items() if k not in prefetch
        }
        if missing:
            self._fetcher(next(iter(missing)))  # fail fast (412) before any work
        results: dict[str, list[dict[str, Any]]] = {}
        pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_FETCHES)
        try:
            futures = {k: pool.submit(self._fetch, k, q) for k, q in missing.items()}
            for key in templates:
                if key in prefetch:
                    results[key] = self._from_value(key, prefetch[key])
            for key, future in futures.items():
                wait = max(0.0, self.deadline.at - time.monotonic()) + JOIN_SLACK_S
                try:
                    results[key] = future.result(timeout=wait)
                except FutureTimeout:  # e.g. a DNS lookup, which no socket timeout covers
                    raise PrefetchTimeout(
                        f"prefetch '{key}' not read within the {self.budget_s:g} s deadline",
                        key=key,
                    ) from None
        finally:
            self.deadline.close()  # cut what is still open: no thread outlives the call
            pool.shutdown(wait=False, cancel_futures=True)
        seen: set[tuple[str, str]] = set()
        resources: list[dict[str, Any]] = []
        for key in templates:
            for r in results[key]:
                ident = (str(r.get("resourceType")), str(r.get("id")))
                if r.get("id") is not None and ident in seen:
                    continue
                if _refers_to_other_patient(r, patient_id):
                    continue
                seen.add(ident)
                resources.append(r)
        found = any(r.get("resourceType") == "Patient" for r in resources)
        return Gathered(resources=resources, patient_found=found, fetched_keys=tuple(missing))
