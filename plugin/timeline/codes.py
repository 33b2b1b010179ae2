"""Code normalisation: one place that turns a FHIR ``(system URI, code)`` into a :class:`Code`.

``system`` becomes a short name (the ``system:code`` prefix used in rules):

=============  ==========================================================================
short name     system URIs (``http``/``https`` and a trailing ``/`` are ignored)
=============  ==========================================================================
``icd10``      ``http://hl7.org/fhir/sid/icd-10-cm``, ``http://hl7.org/fhir/sid/icd-10``,
               ``urn:oid:2.16.840.1.113883.6.90`` / ``.6.3``, MIMIC ``.../diagnosis-icd10``
``icd10pcs``   ``http://www.cms.gov/Medicare/Coding/ICD10``, ``http://hl7.org/fhir/sid/icd-10-pcs``,
               ``urn:oid:2.16.840.1.113883.6.4``, MIMIC ``.../procedure-icd10``
``icd9``       ``http://hl7.org/fhir/sid/icd-9-cm``, ``urn:oid:2.16.840.1.113883.6.103``,
               MIMIC ``.../diagnosis-icd9``
``icd9pcs``    ``urn:oid:2.16.840.1.113883.6.104``, MIMIC ``.../procedure-icd9`` (ICD-9-CM
               volume 3; kept apart from ``icd9`` because dotless codes collide)
``snomed``     ``http://snomed.info/sct``, ``urn:oid:2.16.840.1.113883.6.96``
``loinc``      ``http://loinc.org``, ``urn:oid:2.16.840.1.113883.6.1``
``cpt``        ``http://www.ama-assn.org/go/cpt``, ``urn:oid:2.16.840.1.113883.6.12``
``hcpcs``      ``https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets``,
               ``urn:oid:2.16.840.1.113883.6.285``, ``.6.14``
``rxnorm``     ``http://www.nlm.nih.gov/research/umls/rxnorm``, ``urn:oid:2.16.840.1.113883.6.88``
``local:<uri>`` anything else (the URI as given); ``local:`` when the coding has no system
=============  ==========================================================================

Codes: ICD codes (all four ICD systems) are upper case without dots or spaces (``I63.9`` →
``I639``); other codes are stripped of surrounding white space and otherwise kept as given
(LOINC ``29771-3``, SNOMED ``422504002``).
"""

from __future__ import annotations

from functools import lru_cache

from plugin.timeline.model import Code

_MIMIC = "fhir.mimic.mit.edu/codesystem/"

# Keys are URIs after _canonical_uri (no scheme for http(s), no trailing slash, lower case).
_SYSTEMS: dict[str, str] = {
    "hl7.org/fhir/sid/icd-10-cm": "icd10",
    "hl7.org/fhir/sid/icd-10": "icd10",
    "urn:oid:2.16.840.1.113883.6.90": "icd10",
    "urn:oid:2.16.840.1.113883.6.3": "icd10",
    _MIMIC + "diagnosis-icd10": "icd10",
    "www.cms.gov/medicare/coding/icd10": "icd10pcs",
    "hl7.org/fhir/sid/icd-10-pcs": "icd10pcs",
    "urn:oid:2.16.840.1.113883.6.4": "icd10pcs",
    _MIMIC + "procedure-icd10": "icd10pcs",
    "hl7.org/fhir/sid/icd-9-cm": "icd9",
    "hl7.org/fhir/sid/icd-9": "icd9",
    "urn:oid:2.16.840.1.113883.6.103": "icd9",
    "urn:oid:2.16.840.1.113883.6.2": "icd9",
    _MIMIC + "diagnosis-icd9": "icd9",
    "urn:oid:2.16.840.1.113883.6.104": "icd9pcs",
    _MIMIC + "procedure-icd9": "icd9pcs",
    "snomed.info/sct": "snomed",
    "urn:oid:2.16.840.1.113883.6.96": "snomed",
    "loinc.org": "loinc",
    "urn:oid:2.16.840.1.113883.6.1": "loinc",
    "www.ama-assn.org/go/cpt": "cpt",
    "urn:oid:2.16.840.1.113883.6.12": "cpt",
    "www.cms.gov/medicare/coding/hcpcsreleasecodesets": "hcpcs",
    "urn:oid:2.16.840.1.113883.6.285": "hcpcs",
    "urn:oid:2.16.840.1.113883.6.14": "hcpcs",
    "www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "urn:oid:2.16.840.1.113883.6.88": "rxnorm",
}

ICD_SYSTEMS = frozenset({"icd10", "icd10pcs", "icd9", "icd9pcs"})
SHORT_NAMES = frozenset(_SYSTEMS.values())


def _canonical_uri(uri: str) -> str:
    u = uri.strip().rstrip("/").lower()
    for scheme in ("https://", "http://"):
        if u.startswith(scheme):
            return u[len(scheme) :]
    return u


@lru_cache(maxsize=4096)
def system_name(system_uri: str | None) -> str:
    """The short name of a code system URI (``local:<uri>`` when unknown)."""
    if not system_uri:
        return "local:"
    short = _SYSTEMS.get(_canonical_uri(system_uri))
    if short is not None:
        return short
    if system_uri in SHORT_NAMES:  # already normalised (inline test events)
        return system_uri
    return f"local:{system_uri.strip()}"


def normalise_code(system: str, code: str) -> str:
    """Normalise a code of a *short-named* system (ICD: upper case, no dot)."""
    code = code.strip()
    if system in ICD_SYSTEMS:
        return code.replace(".", "").replace(" ", "").upper()
    return code


def normalise(system_uri: str | None, code: str) -> Code:
    """Normalise one FHIR coding: ``normalise("http://hl7.org/fhir/sid/icd-10-cm", "I63.9")``
    is ``Code("icd10", "I639")``."""
    system = system_name(system_uri)
    return Code(system, normalise_code(system, code))


def parse_code(text: str) -> Code:
    """Parse a rule-style ``system:code`` string (``icd10:I63.9`` → ``Code("icd10", "I639")``).

    The system part may be a short name or a URI (``http://loinc.org:2345-7`` is ambiguous, so
    URIs must be written with ``|``: ``http://loinc.org|2345-7``).
    """
    if "|" in text:
        uri, _, code = text.rpartition("|")
        return normalise(uri, code)
    system, sep, code = text.partition(":")
    if not sep or not code:
        raise ValueError(f"expected 'system:code', got {text!r}")
    if system == "local":
        uri, _, local_code = code.rpartition(":")
        return Code(f"local:{uri}", local_code.strip())
    return Code(system, normalise_code(system, code))
