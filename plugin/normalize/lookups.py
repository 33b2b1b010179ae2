"""Typed look-ups over the normalisation tables (the Python engine's view of README.md).

Each function implements the matching convention of its table exactly as documented in
``plugin/normalize/README.md`` so that a SQL engine joining the same CSV files gets the same
answer. Results are plain strings (``"IP"``, ``"icu"``); :mod:`plugin.fhir.vocab` turns
settings into :class:`plugin.timeline.model.Setting`.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from plugin.normalize.tables import Row, read_table

__all__ = [
    "CHAIN",
    "admit_source_code",
    "canonical_uri",
    "disposition_group",
    "interpretation",
    "is_planned",
    "location_kind",
    "molar_mass",
    "qualitative",
    "setting_chain",
    "setting_for",
    "system_short",
    "ucum_spelling",
]

_WORD = re.compile(r"[A-Z0-9]+")
# The setting inference chain, in the order its links are tried (README.md, ``settings``).
CHAIN = (
    "class.code",
    "class.display",
    "type.snomed",
    "serviceType.snomed",
    "location.kind",
    "admitSource",
)


def canonical_uri(uri: str) -> str:
    """Lower case, no ``http(s)://``, no trailing ``/`` (the key of ``code_systems``)."""
    u = uri.strip().rstrip("/").lower()
    for scheme in ("https://", "http://"):
        if u.startswith(scheme):
            return u[len(scheme) :]
    return u


@cache
def _systems() -> dict[str, str]:
    return {row["uri"]: row["system"] for row in read_table("code_systems")}


@cache
def known_systems() -> frozenset[str]:
    return frozenset(_systems().values())


@lru_cache(maxsize=4096)
def system_short(uri: str | None) -> str:
    """The short name of a code-system URI, ``local:<uri>`` when unknown, ``local:`` when
    there is none. A short name given as the URI (inline test events) is kept."""
    if not uri:
        return "local:"
    short = _systems().get(canonical_uri(uri))
    if short is not None:
        return short
    if uri in known_systems():
        return uri
    return f"local:{uri.strip()}"


def _hits(row: Row, norm: str) -> bool:
    match, value = row["match"], row["value"]
    if match == "exact" or match == "id":
        return norm == value
    if match == "contains" or match == "phrase":
        return value in norm
    if match == "word":
        return value in _WORD.findall(norm)
    return False


@cache
def _by_field(table: str) -> dict[str, tuple[Row, ...]]:
    out: dict[str, list[Row]] = {}
    for row in sorted(read_table(table), key=lambda r: int(r["ord"])):
        out.setdefault(row.get("field", ""), []).append(row)
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=4096)
def setting_for(field: str, value: str) -> str | None:
    """The setting one link of the chain gives for ``value``, or None."""
    norm = value.strip().upper()
    if not norm:
        return None
    for row in _by_field("settings").get(field, ()):
        if _hits(row, norm):
            return row["setting"]
    return None


def setting_chain(**links: str | tuple[str, ...] | None) -> tuple[str, str]:
    """(setting, the link that gave it) for an encounter, trying :data:`CHAIN` in order.

    Keyword names are the chain's fields with ``.`` → ``_`` (``class_code``, ``class_display``,
    ``type_snomed``, ``serviceType_snomed``, ``location_kind``, ``admitSource``); each takes a
    string or a tuple of strings (several type codes, several location kinds). Nothing hits:
    ``("OTHER", "unknown")`` — the caller counts it, it is never guessed.
    """
    for field in CHAIN:
        given = links.get(field.replace(".", "_"))
        values = (given,) if isinstance(given, str) else given or ()
        for value in values:
            found = setting_for(field, value)
            if found is not None:
                return found, field
    return "OTHER", "unknown"


def is_planned(*, priority: str = "", class_code: str = "", admit_source: str = "",
               texts: tuple[str, ...] = ()) -> bool:  # fmt: skip
    """Planned by the ``planned`` table: an exact priority, class or admit-source row, or a
    text word row without a ``negate`` row hitting the same text."""
    rows = _by_field("planned")
    for field, value in (("priority", priority), ("class.code", class_code),
                         ("admitSource", admit_source)):  # fmt: skip
        norm = value.strip().upper()
        if norm and any(_hits(r, norm) for r in rows.get(field, ())):
            return True
    words = [r for r in rows.get("text", ()) if r["match"] != "negate"]
    vetoes = [r["value"] for r in rows.get("text", ()) if r["match"] == "negate"]
    for text in texts:
        norm = text.upper()
        if any(_hits(r, norm) for r in words) and not any(v in norm for v in vetoes):
            return True
    return False


@cache
def _admit_sources() -> dict[str, str]:
    return {row["value"]: row["code"] for row in read_table("admit_sources")}


def admit_source_code(code: str) -> str | None:
    """HL7-style admit-source code; unlisted codes are kept lower-cased; empty → None."""
    key = code.strip().lower()
    return _admit_sources().get(key, key) or None


@cache
def _dispositions() -> tuple[dict[str, str], tuple[Row, ...]]:
    rows = sorted(read_table("dispositions"), key=lambda r: int(r["ord"]))
    exact = {r["value"]: r["group"] for r in rows if r["match"] == "exact"}
    return exact, tuple(r for r in rows if r["match"] != "exact")


def disposition_group(code: str) -> str:
    key = code.strip()
    if key.isdigit() and len(key) == 1:  # UB-04 status written without its leading zero
        key = "0" + key
    exact, words = _dispositions()
    found = exact.get(key) or exact.get(key.lower())
    if found is not None:
        return found
    upper = key.upper()
    return next((r["group"] for r in words if _hits(r, upper)), "other")


@cache
def _locations() -> tuple[tuple[Row, ...], dict[str, str], tuple[Row, ...]]:
    rows = sorted(read_table("locations"), key=lambda r: int(r["ord"]))
    types = tuple(r for r in rows if r["match"] == "type")
    ids = {r["value"]: r["kind"] for r in rows if r["match"] == "id"}
    names = tuple(r for r in rows if r["match"] in ("word", "phrase"))
    return types, ids, names


def location_kind(type_codes: tuple[str, ...], name: str, ref_id: str | None = None) -> str:
    """``icu``, ``ed``, ``ward``, ``procedural``, ``observation`` or ``other`` from a
    Location's type codes, then its id (``locations`` rows with ``match=id``), then its name
    (whole words and phrases: ``Medical Intensive Care Unit (MICU)`` is icu)."""
    types, ids, names = _locations()
    for code in (c.strip().upper() for c in type_codes):
        hit = next((r["kind"] for r in types if r["value"] == code), None)
        if hit is not None:
            return hit
    if ref_id:
        hit = ids.get(ref_id.rsplit("/", 1)[-1].strip().lower())
        if hit is not None:
            return hit
    upper = name.upper()
    return next((r["kind"] for r in names if _hits(r, upper)), "other")


@cache
def _interpretations() -> dict[str, tuple[str | None, bool | None]]:
    out: dict[str, tuple[str | None, bool | None]] = {}
    for row in read_table("interpretations"):
        positive = {"true": True, "false": False}.get(row["positive"])
        out[row["code"]] = (row["flag"] or None, positive)
    return out


def interpretation(code: str) -> tuple[str | None, bool | None]:
    """(flag, positive) of an interpretation code (upper-cased); (None, None) when unknown."""
    return _interpretations().get(code.strip().upper(), (None, None))


@cache
def _qualitative() -> dict[tuple[str, str], str]:
    return {(r["system"], r["value"]): r["meaning"] for r in read_table("qualitative")}


def _text_key(value: str) -> str:
    return " ".join(value.strip().lower().rstrip(".!").split())


def qualitative(system: str, value: str) -> str | None:
    """``positive``, ``negative`` or ``indeterminate`` for a coded answer (``system``: a short
    name — ``snomed``, ``loinc``, ``v2-0078``) or a string (``system="text"``); else None."""
    table = _qualitative()
    if system == "text":
        key = _text_key(value)
        return table.get(("text", key)) or table.get(("text", key.rstrip(".")))
    found = table.get((system, value.strip()))
    return found or table.get((system, value.strip().upper()))


@cache
def _spellings() -> tuple[dict[str, str], dict[str, str]]:
    rows = read_table("units")
    exact = {r["spelling"]: r["ucum"] for r in rows}
    return exact, {k.upper(): v for k, v in exact.items()}


def ucum_spelling(unit: str, *, exact: bool = True) -> str | None:
    """The UCUM form a ``units`` row gives for a spelling: case-sensitive (``exact``), or
    compared upper-cased (tried only after the UCUM parser, since ``mU/L`` ≠ ``MU/L``)."""
    by_case, upper = _spellings()
    u = unit.strip()
    return by_case.get(u) if exact else upper.get(u.upper())


@cache
def _molar() -> dict[tuple[str, str], float]:
    return {(r["system"], r["code"]): float(r["g_per_mol"]) for r in read_table("molar_mass")}


def molar_mass(system: str, code: str) -> float | None:
    """g/mol of the analyte of one (short-named) code, when the table has it."""
    return _molar().get((system, code.strip()))
