"""Code normalisation: one place that turns a FHIR ``(system URI, code)`` into a :class:`Code`.

``system`` becomes a short name (the ``system:code`` prefix used in rules):

The URIs of each short name are rows of ``plugin/normalize/tables/code_systems.csv`` (one
table for every engine; ``http``/``https``, case and a trailing ``/`` are ignored): ICD-10-CM
and WHO ICD-10 (``http://hl7.org/fhir/sid/icd-10``) → ``icd10``; ICD-10-PCS → ``icd10pcs``;
ICD-9-CM → ``icd9``; ICD-9-CM volume 3 → ``icd9pcs`` (kept apart from ``icd9`` because
dotless codes collide); SNOMED CT, LOINC, CPT, HCPCS, RxNorm; their ``urn:oid:`` forms and the
MIMIC-IV code systems. Anything else is ``local:<uri>`` (the URI as given), ``local:`` when the
coding has no system.

Codes: ICD codes (all four ICD systems) are upper case without dots or spaces (``I63.9`` →
``I639``); other codes are stripped of surrounding white space and otherwise kept as given
(LOINC ``29771-3``, SNOMED ``422504002``).
"""

from __future__ import annotations

from plugin.normalize.lookups import known_systems, system_short
from plugin.timeline.model import Code

ICD_SYSTEMS = frozenset({"icd10", "icd10pcs", "icd9", "icd9pcs"})
SHORT_NAMES = known_systems()


def system_name(system_uri: str | None) -> str:
    """The short name of a code system URI (``local:<uri>`` when unknown)."""
    return system_short(system_uri)


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
