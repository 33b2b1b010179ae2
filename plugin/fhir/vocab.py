"""Normalise the encounter vocabularies that differ between sites.

* :func:`setting_of` — ``Encounter.class`` (HL7 v3 ActCode and local variants such as MIMIC's
  admission classes) → :class:`Setting`.
* :func:`disposition_group` — ``hospitalization.dischargeDisposition`` (HL7 discharge-disposition,
  UB-04 patient status, a few SNOMED CT codes, MIMIC text) → one of the groups of
  ``rules/README.md``: home, admitted, transfer, snf, hospice, rehab, psych, expired, ama, other.
* :func:`admit_source_code` — ``hospitalization.admitSource`` → HL7 admit-source style lower-case
  codes (``emd``, ``hosp-trans``, ``outp``, ``gp``, ``nursing``, ``psych``, ``rehab``, ``born``,
  ``elective``, ``other``); unknown codes are kept, lower-cased.
* :func:`location_kind` — a location's type codes and name → ``icu``, ``ed``, ``ward`` or ``other``.

MIMIC-IV note: its hospital Encounters are *admissions* (``EW EMER.``, ``URGENT``, ``DIRECT
EMER.`` ...), so they map to IP (or OBS for the observation classes), never to ED: the ED part of
the stay shows only as the admit source ``EMERGENCY ROOM`` → ``emd``.
"""

from __future__ import annotations

import re

from plugin.timeline.model import Setting

_CLASS: dict[str, Setting] = {
    # HL7 v3 ActCode (R4 Encounter.class)
    "AMB": Setting.AMB,
    "EMER": Setting.ED,
    "IMP": Setting.IP,
    "ACUTE": Setting.IP,
    "NONAC": Setting.IP,
    "OBSENC": Setting.OBS,
    "PRENC": Setting.AMB,
    "SS": Setting.OBS,  # short stay
    "VR": Setting.VIRTUAL,
    "HH": Setting.HOME,
    "FLD": Setting.OTHER,
    # common local spellings
    "ED": Setting.ED,
    "ER": Setting.ED,
    "EMERGENCY": Setting.ED,
    "INPATIENT": Setting.IP,
    "IP": Setting.IP,
    "OBS": Setting.OBS,
    "OBSERVATION": Setting.OBS,
    "OUTPATIENT": Setting.AMB,
    "OP": Setting.AMB,
    "AMBULATORY": Setting.AMB,
    "ICU": Setting.ICU,
    "VIRTUAL": Setting.VIRTUAL,
    "TELEHEALTH": Setting.VIRTUAL,
    # MIMIC-IV admission classes (all hospital admissions)
    "EW EMER.": Setting.IP,
    "URGENT": Setting.IP,
    "DIRECT EMER.": Setting.IP,
    "ELECTIVE": Setting.IP,
    "SURGICAL SAME DAY ADMISSION": Setting.IP,
    "OBSERVATION ADMIT": Setting.OBS,
    "EU OBSERVATION": Setting.OBS,
    "DIRECT OBSERVATION": Setting.OBS,
    "AMBULATORY OBSERVATION": Setting.OBS,
}

PLANNED_CLASSES = frozenset({"ELECTIVE", "SURGICAL SAME DAY ADMISSION"})


def setting_of(class_code: str) -> Setting:
    code = class_code.strip().upper()
    found = _CLASS.get(code)
    if found is not None:
        return found
    if "OBSERV" in code:
        return Setting.OBS
    if "EMER" in code:
        return Setting.ED
    if "INPAT" in code or "ADMI" in code:
        return Setting.IP
    if "AMB" in code or "OUTPAT" in code:
        return Setting.AMB
    return Setting.OTHER


_DISPOSITION: dict[str, str] = {
    # HL7 R4 discharge-disposition
    "home": "home",
    "alt-home": "home",
    "other-hcf": "transfer",
    "hosp": "hospice",  # HL7 "hosp" is Hospice
    "long": "snf",
    "aadvice": "ama",
    "exp": "expired",
    "psy": "psych",
    "rehab": "rehab",
    "snf": "snf",
    "oth": "other",
    # UB-04 patient discharge status
    "01": "home",
    "06": "home",
    "02": "transfer",
    "05": "transfer",
    "43": "transfer",
    "63": "transfer",
    "65": "psych",
    "66": "transfer",
    "70": "transfer",
    "03": "snf",
    "04": "snf",
    "61": "snf",
    "64": "snf",
    "62": "rehab",
    "07": "ama",
    "09": "admitted",
    "20": "expired",
    "40": "expired",
    "41": "expired",
    "42": "expired",
    "50": "hospice",
    "51": "hospice",
    # SNOMED CT
    "306689006": "home",  # discharge to home
    "306691003": "home",  # discharge to residential home
    "306706006": "admitted",  # discharge to ward
    # text values (MIMIC-IV and others)
    "admitted": "admitted",
    "expired": "expired",
    "died": "expired",
    "dead/expired": "expired",
    "home health care": "home",
    "skilled nursing facility": "snf",
    "against advice": "ama",
    "hospice": "hospice",
    "psych facility": "psych",
    "acute hospital": "transfer",
    "chronic/long term acute care": "transfer",
    "other facility": "transfer",
    "assisted living": "home",
}

# Substring fall-backs for free-text dispositions, first match wins.
_DISPOSITION_WORDS: tuple[tuple[str, str], ...] = (
    ("EXPIR", "expired"),
    ("DIED", "expired"),
    ("DECEASED", "expired"),
    ("HOSPICE", "hospice"),
    ("AGAINST", "ama"),
    ("ADMIT", "admitted"),
    ("SKILLED", "snf"),
    ("NURSING", "snf"),
    ("REHAB", "rehab"),
    ("PSYCH", "psych"),
    ("TRANSFER", "transfer"),
    ("HOSPITAL", "transfer"),
    ("HOME", "home"),
)

DISPOSITION_GROUPS = frozenset(
    {"home", "admitted", "transfer", "snf", "hospice", "rehab", "psych", "expired", "ama", "other"}
)


def disposition_group(code: str) -> str:
    key = code.strip()
    if key.isdigit() and len(key) == 1:  # UB-04 status written without its leading zero
        key = "0" + key
    found = _DISPOSITION.get(key) or _DISPOSITION.get(key.lower())
    if found is not None:
        return found
    upper = key.upper()
    for word, group in _DISPOSITION_WORDS:
        if word in upper:
            return group
    return "other"


_ADMIT_SOURCE: dict[str, str] = {
    "emergency room": "emd",
    "emergency": "emd",
    "ed": "emd",
    "er": "emd",
    "transfer from hospital": "hosp-trans",
    "transfer from skilled nursing facility": "nursing",
    "internal transfer to or from psych": "psych",
    "physician referral": "gp",
    "clinic referral": "outp",
    "procedure site": "outp",
    "walk-in/self referral": "other",
    "pacu": "other",
    "information not available": "",
    "305956004": "gp",  # SNOMED referral by physician
    "305997006": "outp",  # SNOMED referral by radiologist
    "el": "elective",
}


def admit_source_code(code: str) -> str | None:
    key = code.strip().lower()
    found = _ADMIT_SOURCE.get(key, key)
    return found or None


PLANNED_PRIORITIES = frozenset({"EL", "R", "P", "ELECTIVE", "ROUTINE", "PREOP"})
_PLANNED_WORDS = ("ELECTIVE", "PLANNED", "SCHEDULED", "SAME DAY", "PREADMISSION")


def is_planned_text(text: str) -> bool:
    upper = text.upper()
    return any(word in upper for word in _PLANNED_WORDS) and "UNPLANNED" not in upper


_ICU_TYPES = frozenset({"ICU", "CCU", "PEDICU", "PEDNICU", "NCCU", "SICU", "MICU", "NICU", "CVICU"})
_ED_TYPES = frozenset({"ER", "ETU", "EMER", "ED"})
_WARD_TYPES = frozenset({"HU", "WARD", "RHU", "PEDU", "RO", "BD", "WA"})
_ICU_WORDS = frozenset({"ICU", "MICU", "SICU", "CCU", "NICU", "PICU", "CVICU", "TSICU", "CSRU"})
_ICU_PHRASES = ("INTENSIVE CARE", "CRITICAL CARE")
_ED_WORDS = frozenset({"ED", "ER", "EMERGENCY", "TRIAGE"})
_WARD_WORDS = frozenset({"WARD", "ROOM", "BED", "FLOOR", "UNIT", "WING"})
_WORD = re.compile(r"[A-Z0-9]+")


def location_kind(type_codes: tuple[str, ...], name: str) -> str:
    """``icu``, ``ed``, ``ward`` or ``other`` from a Location's type codes and name (whole words:
    ``Medical Intensive Care Unit (MICU)`` is icu, ``Community Health Center`` is other)."""
    for code in (c.upper() for c in type_codes):
        if code in _ICU_TYPES:
            return "icu"
        if code in _ED_TYPES:
            return "ed"
        if code in _WARD_TYPES:
            return "ward"
    upper = name.upper()
    words = set(_WORD.findall(upper))
    if words & _ICU_WORDS or any(phrase in upper for phrase in _ICU_PHRASES):
        return "icu"
    if words & _ED_WORDS:
        return "ed"
    if words & _WARD_WORDS:
        return "ward"
    return "other"
