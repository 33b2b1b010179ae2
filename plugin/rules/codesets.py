"""Compiled code sets: what a selector's ``codes:`` list matches.

ICD-9/ICD-10 entries are hierarchical prefixes (``I63`` matches ``I639``) and may be
ranges compared on the prefix (``I60-I63``); CPT/HCPCS entries may be ranges
(``45378-45392``); everything else matches exactly. ICD codes are compared without
dots, upper case — the same normalisation the timeline applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from plugin.timeline.model import Code

PREFIX_SYSTEMS = frozenset({"icd10", "icd9", "icd10pcs"})
RANGE_SYSTEMS = PREFIX_SYSTEMS | {"cpt", "hcpcs"}


def norm_code(system: str, code: str) -> str:
    code = str(code).strip()
    if system in PREFIX_SYSTEMS:
        return code.replace(".", "").upper()
    if system in ("location", "setting"):
        return code.lower() if system == "location" else code.upper()
    return code


@dataclass(slots=True)
class CodeSet:
    """Exact codes, prefixes and ranges per system."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefixes: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, system: str, entry: str) -> None:
        entry = str(entry).strip()
        if system in RANGE_SYSTEMS and "-" in entry.strip("-"):
            lo, hi = (norm_code(system, x) for x in entry.split("-", 1))
            self.ranges.setdefault(system, []).append((lo, hi))
        elif system in PREFIX_SYSTEMS:
            self.prefixes.setdefault(system, []).append(norm_code(system, entry))
        else:
            self.exact.setdefault(system, set()).add(norm_code(system, entry))

    def update(self, other: CodeSet) -> None:
        for s, codes in other.exact.items():
            self.exact.setdefault(s, set()).update(codes)
        for s, prefixes in other.prefixes.items():
            self.prefixes.setdefault(s, []).extend(prefixes)
        for s, ranges in other.ranges.items():
            self.ranges.setdefault(s, []).extend(ranges)

    def __contains__(self, code: Code) -> bool:
        system, value = code.system, code.code
        exact = self.exact.get(system)
        if exact is not None and value in exact:
            return True
        for prefix in self.prefixes.get(system, ()):
            if value.startswith(prefix):
                return True
        for lo, hi in self.ranges.get(system, ()):
            if system in PREFIX_SYSTEMS:
                if lo <= value[: len(lo)] and value[: len(hi)] <= hi:
                    return True
            elif len(value) == len(lo) and lo <= value <= hi:
                return True
        return False

    def any_of(self, codes: Iterable[Code]) -> bool:
        return any(c in self for c in codes)

    def systems(self) -> set[str]:
        return set(self.exact) | set(self.prefixes) | set(self.ranges)
