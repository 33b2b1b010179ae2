"""The follow-up a rule expects, as something a clinician could order, and the codes that
count as doing it. Computed once at load time (value sets resolved) and read through
:mod:`plugin.rules.api`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from plugin.rules.codesets import CodeSet
from plugin.rules.schema import Selector, ValueSetSpec
from plugin.rules.selectors import resolve_codes

ORDERABLE = frozenset({"procedure", "order", "observation", "report"})
# Preference order: SNOMED CT first (what most EHR order catalogues map to), then LOINC.
SYSTEM_URIS = {
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "cpt": "http://www.ama-assn.org/go/cpt",
    "hcpcs": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowUp:
    """An orderable follow-up a rule expects (the first orderable entry of its follow-ups)."""

    label: str  # "Colonoscopy"
    coding: tuple[dict[str, str], ...]  # FHIR Codings


def order_for(selectors: Iterable[Selector], specs: Mapping[str, ValueSetSpec]) -> FollowUp | None:
    """The first orderable selector with a concrete code: a value set's first code of the
    preferred system (labelled with the value set's title), or a literal code."""
    for sel in selectors:
        kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
        if not ORDERABLE.intersection(kinds) or not sel.codes:
            continue
        for ref in sel.codes:
            system, _, code = ref.partition(":")
            if system == "valueset" and code in specs:
                spec = specs[code]
                by_system: dict[str, list[str | int]] = {str(k): v for k, v in spec.codes.items()}
                codings = [
                    {"system": uri, "code": str(by_system[s][0]).split("-")[0]}
                    for s, uri in SYSTEM_URIS.items()
                    if by_system.get(s)
                ]
                if codings:
                    label = spec.title.split(" (")[0].strip()
                    return FollowUp(label=label, coding=tuple(codings[:1]))
            elif system in SYSTEM_URIS and "-" not in code.strip("-"):
                return FollowUp(
                    label=f"{system.upper()} {code}",
                    coding=({"system": SYSTEM_URIS[system], "code": code},),
                )
    return None


def codes_of(selectors: Iterable[Selector], valuesets: Mapping[str, CodeSet]) -> CodeSet:
    """Every code named by the selectors' ``codes:`` (value sets expanded)."""
    out = CodeSet()
    for sel in selectors:
        if sel.codes:
            out.update(resolve_codes(sel.codes, valuesets))
    return out
