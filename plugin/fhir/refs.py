"""Resolve FHIR references between the resources of one patient.

Handles the reference shapes seen in real exports:

* relative ``Type/id`` (and ``Type/id/_history/n``) and absolute ``https://.../Type/id``;
* ``urn:uuid:X`` (Synthea transaction Bundles): resolved to the resource whose ``id`` is ``X``
  (:mod:`plugin.fhir.read` gives Bundle entries without an ``id`` the uuid of their ``fullUrl``);
* conditional references ``Type?identifier=system|value`` (Synthea Bulk export): resolved by
  identifier among the resources given;
* ``#id``: a contained resource of the referring resource.

:meth:`ReferenceIndex.canonical` turns any of these into ``Type/id`` for :attr:`Event.source`,
:attr:`Event.encounter` and ``part_of``, so one resource has one name however it is referred to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

JSON = dict[str, Any]


class ReferenceIndex:
    def __init__(self, resources: Iterable[JSON]):
        self._by_ref: dict[str, JSON] = {}
        self._by_id: dict[str, list[JSON]] = {}
        self._by_identifier: dict[tuple[str, str, str], JSON] = {}
        for r in resources:
            rtype = r.get("resourceType")
            rid = r.get("id")
            if not isinstance(rtype, str) or not isinstance(rid, str):
                continue
            self._by_ref.setdefault(f"{rtype}/{rid}", r)
            self._by_id.setdefault(rid, []).append(r)
            idents = r.get("identifier")
            if isinstance(idents, dict):  # Location.managingOrganization etc. use a single one
                idents = [idents]
            if isinstance(idents, list):
                for ident in idents:
                    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                        sys_ = ident.get("system")
                        system = sys_ if isinstance(sys_, str) else ""
                        value: str = ident["value"]
                        self._by_identifier.setdefault((rtype, system, value), r)
                        self._by_identifier.setdefault((rtype, "", value), r)

    def get(self, rtype: str, rid: str) -> JSON | None:
        return self._by_ref.get(f"{rtype}/{rid}")

    def resolve(
        self, ref: str | None, rtype: str | None = None, container: JSON | None = None
    ) -> JSON | None:
        """The resource ``ref`` points to (of type ``rtype`` if given), or None."""
        if not ref:
            return None
        if ref.startswith("#"):
            return _contained(container, ref[1:]) if container is not None else None
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            rid = ref.rpartition(":")[2]
            for r in self._by_id.get(rid, ()):
                if rtype is None or r.get("resourceType") == rtype:
                    return r
            return None
        if "?" in ref:
            return self._conditional(ref)
        parts = ref.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) < 2:
            return None
        found = self._by_ref.get(f"{parts[-2]}/{parts[-1]}")
        if found is not None and rtype is not None and found.get("resourceType") != rtype:
            return None
        return found

    def canonical(self, ref: str | None, rtype: str | None = None) -> str | None:
        """``Type/id`` for a reference, resolved if possible, else read from the string."""
        if not ref:
            return None
        found = self.resolve(ref, rtype)
        if found is not None:
            return f"{found['resourceType']}/{found['id']}"
        if ref.startswith("urn:uuid:"):
            rid = ref[len("urn:uuid:") :]
            return f"{rtype}/{rid}" if rtype else rid
        if "?" in ref or ref.startswith("#"):
            return ref
        parts = ref.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return "/".join(parts[-2:]) if len(parts) >= 2 else ref

    def _conditional(self, ref: str) -> JSON | None:
        rtype, _, query = ref.partition("?")
        rtype = rtype.rsplit("/", 1)[-1]
        for param in query.split("&"):
            name, _, value = param.partition("=")
            if name != "identifier" or not value:
                continue
            system, bar, ident = value.rpartition("|")
            key = (rtype, system if bar else "", ident)
            found = self._by_identifier.get(key)
            if found is not None:
                return found
        return None


def _contained(container: JSON, rid: str) -> JSON | None:
    contained = container.get("contained")
    if isinstance(contained, list):
        for r in contained:
            if isinstance(r, dict) and r.get("id") == rid:
                return r
    return None
