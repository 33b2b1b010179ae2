"""What a FHIR server says it can do (its CapabilityStatement, ``/metadata``), reduced to
what the client decides on: ``$everything``, ``$export`` levels, search parameters and
``_include`` targets per type, and the vendor family for quirks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from plugin.errors import FatalFhirError


class ServerType(StrEnum):
    """Vendor families whose quirks we may need to work around (from ``/metadata``)."""

    EPIC = "epic"
    ORACLE = "oracle"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What we use from the CapabilityStatement."""

    server_type: ServerType
    everything: bool  # Patient/$everything
    export: frozenset[str]  # Bulk $export levels: system, patient, group
    search_params: Mapping[str, frozenset[str]] = field(default_factory=dict)
    includes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_statement(cls, cs: Mapping[str, Any]) -> Capabilities:
        if cs.get("resourceType") != "CapabilityStatement":
            raise FatalFhirError("/metadata did not return a CapabilityStatement")
        software = " ".join(str(cs.get(k, "")) for k in ("publisher", "name"))
        software += " " + str((cs.get("software") or {}).get("name", ""))
        low = software.lower()
        server_type = (
            ServerType.EPIC
            if "epic" in low
            else ServerType.ORACLE
            if "oracle" in low or "cerner" in low
            else ServerType.OTHER
        )
        everything = False
        export: set[str] = set()
        params: dict[str, frozenset[str]] = {}
        includes: dict[str, frozenset[str]] = {}
        for rest in cs.get("rest") or []:
            if rest.get("mode", "server") != "server":
                continue
            if any(op.get("name") == "export" for op in rest.get("operation") or []):
                export.add("system")
            for res in rest.get("resource") or []:
                rtype = res.get("type")
                ops = {op.get("name") for op in res.get("operation") or []}
                if rtype == "Patient":
                    everything = "everything" in ops
                    if "export" in ops:
                        export.add("patient")
                if rtype == "Group" and "export" in ops:
                    export.add("group")
                params[rtype] = frozenset(p.get("name") for p in res.get("searchParam") or [])
                includes[rtype] = frozenset(res.get("searchInclude") or [])
        return cls(
            server_type=server_type,
            everything=everything,
            export=frozenset(export),
            search_params=params,
            includes=includes,
        )

    def supports(self, rtype: str, param: str) -> bool:
        # a server that lists no search parameters for a type gets the benefit of the doubt
        known = self.search_params.get(rtype)
        return not known or param in known
