"""Normalise the encounter vocabularies that differ between sites, through the tables of
:mod:`plugin.normalize` (``plugin/normalize/tables``; nothing is mapped in code here).

* :func:`setting_of` — ``Encounter.class`` code → :class:`Setting` (the first link of the
  chain); :func:`infer_setting` runs the whole documented chain (``class.code`` →
  ``class.display`` → ``type``/``serviceType`` SNOMED CT → location kind → ``admitSource``)
  and says which link decided, or ``unknown``.
* :func:`disposition_group` — ``hospitalization.dischargeDisposition`` → one of the groups of
  ``rules/README.md``: home, admitted, transfer, snf, hospice, rehab, psych, expired, ama, other.
* :func:`admit_source_code` — ``hospitalization.admitSource`` → HL7 admit-source style
  lower-case codes; unknown codes are kept, lower-cased.
* :func:`location_kind` — a location's type codes, id and name → ``icu``, ``ed``, ``ward``,
  ``procedural`` (PACU, operating room: not a floor stay), ``observation`` or ``other``.
* :func:`is_planned` — elective/planned markers (``planned`` table).

MIMIC-IV note: its hospital Encounters are *admissions* (``EW EMER.``, ``URGENT``, ``DIRECT
EMER.`` ...), so they map to IP (or OBS for the observation classes), never to ED: the ED part of
the stay shows only as the admit source ``EMERGENCY ROOM`` → ``emd``. The exception is ``EU
OBSERVATION``, observation in the emergency unit (hours, not an admission): ED.
"""

from __future__ import annotations

from plugin.normalize import lookups
from plugin.timeline.model import Setting

__all__ = [
    "admit_source_code",
    "disposition_group",
    "infer_setting",
    "is_planned",
    "location_kind",
    "setting_of",
]

admit_source_code = lookups.admit_source_code
disposition_group = lookups.disposition_group
location_kind = lookups.location_kind
is_planned = lookups.is_planned


def setting_of(class_code: str) -> Setting:
    """The setting an ``Encounter.class`` code gives (``OTHER`` when the table has none)."""
    return Setting(lookups.setting_for("class.code", class_code) or "OTHER")


def infer_setting(
    *,
    class_code: str = "",
    class_display: str = "",
    type_snomed: tuple[str, ...] = (),
    service_snomed: tuple[str, ...] = (),
    location_kinds: tuple[str, ...] = (),
    admit_source: str = "",
) -> tuple[Setting, str]:
    """(setting, the chain link that decided it — or ``unknown``)."""
    found, link = lookups.setting_chain(
        class_code=class_code,
        class_display=class_display,
        type_snomed=type_snomed,
        serviceType_snomed=service_snomed,
        location_kind=location_kinds,
        admitSource=admit_source,
    )
    return Setting(found), link
