"""Transformations of FHIR JSON that a site's coding habits apply and that must not change
what the rules find (issue 11, item 8).

A data set is ``Files``: relative file name → the resources of that file, in order. Each
transformation edits a deep copy in place and returns how many things it changed, so a test can
check it did change the input (a transformation that finds nothing to change proves nothing).
Each one is the kind of difference seen between hospitals' exports of the same care.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from plugin.rules.codesets import CodeSet
from plugin.timeline.codes import normalise

JSON = dict[str, Any]
Files = dict[str, list[JSON]]
Transform = Callable[[Files], int]

ICD_URIS = {
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-9-cm",
}
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# HL7 v3 ActCode displays (terminology.hl7.org), as an export that drops the code writes them
CLASS_DISPLAY = {
    "AMB": "ambulatory",
    "EMER": "emergency",
    "IMP": "inpatient encounter",
    "ACUTE": "inpatient acute",
    "NONAC": "inpatient non-acute",
    "OBSENC": "observation encounter",
    "PRENC": "pre-admission",
    "SS": "short stay",
    "VR": "virtual",
    "HH": "home health",
}


def resources(files: Files, rtype: str | None = None) -> Iterator[JSON]:
    for rows in files.values():
        for r in rows:
            if rtype is None or r.get("resourceType") == rtype:
                yield r


def concepts(r: JSON) -> Iterator[JSON]:
    """The CodeableConcepts that carry diagnoses: Condition.code, Encounter.reasonCode."""
    if r.get("resourceType") == "Condition" and isinstance(r.get("code"), dict):
        yield r["code"]
    if r.get("resourceType") == "Encounter":
        yield from (cc for cc in r.get("reasonCode") or [] if isinstance(cc, dict))


def diagnosis_codings(files: Files) -> Iterator[JSON]:
    for r in resources(files):
        for cc in concepts(r):
            yield from (c for c in cc.get("coding") or [] if isinstance(c, dict))


# --- codes ------------------------------------------------------------------------------------
def icd_dots_stripped(files: Files) -> int:
    n = 0
    for c in diagnosis_codings(files):
        if c.get("system") in ICD_URIS and "." in str(c.get("code", "")):
            c["code"] = c["code"].replace(".", "")
            n += 1
    return n


def icd_dots_added(files: Files) -> int:
    """``I639`` → ``I63.9`` (ICD-10: after the category's 3 characters; ICD-9: after 3 digits,
    E codes after 4)."""
    n = 0
    for c in diagnosis_codings(files):
        code = str(c.get("code", ""))
        if c.get("system") not in ICD_URIS or "." in code:
            continue
        cut = 4 if code.startswith("E") and "icd-9" in c["system"] else 3
        if len(code) > cut:
            c["code"] = f"{code[:cut]}.{code[cut:]}"
            n += 1
    return n


class Membership:
    """Which value sets a code is in: codes with the same membership mean the same to every
    rule that reads value sets."""

    def __init__(self, valuesets: dict[str, CodeSet]):
        self.valuesets = valuesets

    def of(self, system: str | None, code: str) -> frozenset[str]:
        c = normalise(system, code)
        return frozenset(name for name, cs in self.valuesets.items() if c in cs)

    def pool(self, files: Files, system_uri: str) -> dict[frozenset[str], JSON]:
        """A coding of ``system_uri`` for each membership: codes seen in the data, and the
        value sets' exact codes."""
        found: dict[frozenset[str], JSON] = {}
        short = normalise(system_uri, "x").system
        for cs in self.valuesets.values():
            for code in sorted(cs.exact.get(short, ())):
                found.setdefault(self.of(system_uri, code), {"system": system_uri, "code": code})
        for c in diagnosis_codings(files):
            if c.get("system") == system_uri and c.get("code"):
                found.setdefault(self.of(system_uri, c["code"]), dict(c))
        found.pop(frozenset(), None)
        return found


def one_system_only(membership: Membership, keep: str) -> Transform:
    """Every diagnosis concept coded in one system only (``keep``: "icd" or "snomed"): the
    other system's codings are dropped when the kept ones mean the same to the value sets, or
    replaced by a kept-system code with the same value-set membership. Concepts with no
    equivalent are left as they are."""

    def kept(c: JSON) -> bool:
        return (c.get("system") in ICD_URIS) if keep == "icd" else c.get("system") == SNOMED

    def transform(files: Files) -> int:
        target = "http://hl7.org/fhir/sid/icd-10-cm" if keep == "icd" else SNOMED
        pool = membership.pool(files, target)
        n = 0
        for r in resources(files):
            for cc in concepts(r):
                codings = [c for c in cc.get("coding") or [] if isinstance(c, dict)]
                others = [c for c in codings if not kept(c) and c.get("code")]
                if not others:
                    continue
                want = frozenset().union(
                    *(membership.of(c.get("system"), c["code"]) for c in codings)
                )
                mine = [c for c in codings if kept(c)]
                have = frozenset().union(
                    *(membership.of(c.get("system"), c["code"]) for c in mine if c.get("code"))
                )
                if mine and have == want:
                    cc["coding"] = mine
                elif not mine and want in pool:
                    cc["coding"] = [dict(pool[want])]
                else:
                    continue
                cc.pop("text", None)
                n += 1
        return n

    return transform


# --- encounters -------------------------------------------------------------------------------
def class_display_only(files: Files) -> int:
    """``Encounter.class`` carrying only a display (``{"display": "emergency"}``)."""
    n = 0
    for e in resources(files, "Encounter"):
        cls = e.get("class")
        if isinstance(cls, dict) and cls.get("code"):
            display = cls.get("display") or CLASS_DISPLAY.get(cls["code"])
            if display:
                e["class"] = {"display": display}
                n += 1
    return n


_PRINCIPAL_USES = ("billing", "DD")


def _principal(entries: list[JSON]) -> JSON | None:
    """The entry ``plugin.fhir.encounter.principal_codes`` reads (kept where it is)."""

    def uses(e: JSON) -> set[str]:
        return {c.get("code") for c in (e.get("use") or {}).get("coding") or []}

    ranked = [e for e in entries if e.get("rank") == 1]
    pool = ranked or entries
    for use in _PRINCIPAL_USES:
        hit = next((e for e in pool if use in uses(e)), None)
        if hit is not None:
            return hit
    return ranked[0] if ranked else None


def _conditions(files: Files) -> dict[str, JSON]:
    out = {}
    for c in resources(files, "Condition"):
        out[f"Condition/{c.get('id')}"] = c
        out[f"urn:uuid:{c.get('id')}"] = c
    return out


def _ref(e: JSON) -> str:
    return f"Encounter/{e['id']}"


def _undated(c: JSON) -> bool:
    return not any(c.get(k) for k in ("onsetDateTime", "onsetPeriod", "recordedDate"))


def diagnosis_to_condition_encounter(files: Files) -> int:
    """Non-principal ``Encounter.diagnosis`` entries dropped; their Conditions point to the
    encounter with ``Condition.encounter`` instead."""
    conds = _conditions(files)
    n = 0
    for e in resources(files, "Encounter"):
        entries = e.get("diagnosis") or []
        principal = _principal(entries)
        keep = []
        for d in entries:
            cond = conds.get((d.get("condition") or {}).get("reference", ""))
            linked = cond is not None and (cond.get("encounter") or {}).get("reference")
            if d is principal or cond is None or (linked and linked != _ref(e)):
                keep.append(d)
                continue
            cond["encounter"] = {"reference": _ref(e)}
            n += 1
        if len(keep) != len(entries):
            if keep:
                e["diagnosis"] = keep
            else:
                e.pop("diagnosis")
    return n


def diagnosis_to_reason_code(files: Files) -> int:
    """Non-principal ``Encounter.diagnosis`` entries become ``Encounter.reasonCode`` (the
    Condition's code); a Condition that was dated only by that link gets
    ``Condition.encounter``, so it is not lost."""
    conds = _conditions(files)
    n = 0
    for e in resources(files, "Encounter"):
        entries = e.get("diagnosis") or []
        principal = _principal(entries)
        keep = []
        for d in entries:
            cond = conds.get((d.get("condition") or {}).get("reference", ""))
            if d is principal or cond is None or not isinstance(cond.get("code"), dict):
                keep.append(d)
                continue
            e.setdefault("reasonCode", []).append(cond["code"])
            if _undated(cond) and not cond.get("encounter"):
                cond["encounter"] = {"reference": _ref(e)}
            n += 1
        if len(keep) != len(entries):
            if keep:
                e["diagnosis"] = keep
            else:
                e.pop("diagnosis")
    return n


def condition_encounter_to_diagnosis(files: Files) -> int:
    """``Condition.encounter`` dropped; the encounter lists the Condition in
    ``Encounter.diagnosis`` instead (no rank, no use: never the principal)."""
    encounters = {_ref(e): e for e in resources(files, "Encounter")}
    n = 0
    for c in resources(files, "Condition"):
        ref = (c.get("encounter") or {}).get("reference")
        enc = encounters.get(ref or "")
        if enc is None:
            continue
        listed = {(d.get("condition") or {}).get("reference") for d in enc.get("diagnosis") or []}
        if f"Condition/{c['id']}" not in listed:
            enc.setdefault("diagnosis", []).append(
                {"condition": {"reference": f"Condition/{c['id']}"}}
            )
        del c["encounter"]
        n += 1
    return n


# --- results ----------------------------------------------------------------------------------
# canonical UCUM -> the spelling sites write in Quantity.unit with no code
COMMON_SPELLING = {
    "10*3/uL": "K/uL",
    "m[IU]/L": "mIU/L",
    "mg/dL": "mg/dl",
    "g/dL": "g/dl",
    "mmol/L": "mmol/l",
    "fL": "fl",
    "ng/mL": "ng/ml",
    "[degF]": "°F",
    "Cel": "°C",
    "/min": "beats/min",
}
# LOINC -> (from UCUM, to UCUM, factor): the same quantity in another unit
CONVERSIONS = {
    "718-7": ("g/dL", "g/L", 10.0),  # haemoglobin
    "2345-7": ("mg/dL", "mmol/L", 1 / 18.016),  # glucose
    "2160-0": ("mg/dL", "umol/L", 88.42),  # creatinine
    "8310-5": ("Cel", "[degF]", None),  # body temperature (affine)
    "3016-3": ("m[IU]/L", "u[IU]/mL", 1.0),  # TSH: the same number in another unit
}


def _quantities(o: JSON) -> Iterator[tuple[str, JSON, JSON]]:
    """(LOINC code, the element holding value[x] and referenceRange, its valueQuantity)."""
    items = [o, *(c for c in o.get("component") or [] if isinstance(c, dict))]
    for item in items:
        q = item.get("valueQuantity")
        code = next((c.get("code") for c in (item.get("code") or {}).get("coding") or []), None)
        if isinstance(q, dict) and isinstance(q.get("value"), int | float):
            yield code or "", item, q


def unit_common_spelling(files: Files) -> int:
    n = 0
    for o in resources(files, "Observation"):
        for _, _, q in _quantities(o):
            unit = q.get("code") or q.get("unit")
            if unit in COMMON_SPELLING:
                q["unit"] = COMMON_SPELLING[unit]
                q.pop("code", None)
                q.pop("system", None)
                n += 1
    return n


def _convert(value: float, frm: str, factor: float | None) -> float:
    if factor is None:  # Cel -> [degF]
        return round(value * 9 / 5 + 32, 6)
    return round(value * factor, 6)


def unit_converted(files: Files) -> int:
    n = 0
    for o in resources(files, "Observation"):
        for loinc, item, q in _quantities(o):
            conv = CONVERSIONS.get(loinc)
            if conv is None or (q.get("code") or q.get("unit")) != conv[0]:
                continue
            frm, to, factor = conv
            q["value"] = _convert(q["value"], frm, factor)
            q.update(unit=to, code=to, system=UCUM)
            for rr in item.get("referenceRange") or []:
                for end in ("low", "high"):
                    bound = rr.get(end)
                    if isinstance(bound, dict) and isinstance(bound.get("value"), int | float):
                        bound.update(value=_convert(bound["value"], frm, factor), unit=to, code=to)
            n += 1
    return n


_FLAG = {"H": "high", "HH": "high", "L": "low", "LL": "low", "N": "normal"}


def interpretation_removed_with_range(files: Files) -> int:
    """Numeric results keep their ``referenceRange`` and lose ``interpretation`` — where the
    interpretation said what the range says (H above high, L below low, N within)."""
    n = 0
    for o in resources(files, "Observation"):
        for _, item, q in _quantities(o):
            flags = [
                c.get("code")
                for cc in item.get("interpretation") or []
                for c in cc.get("coding") or []
            ]
            ranges = [
                rr for rr in item.get("referenceRange") or [] if rr.get("low") or rr.get("high")
            ]
            if len(flags) != 1 or flags[0] not in _FLAG or not ranges:
                continue
            low = (ranges[0].get("low") or {}).get("value")
            high = (ranges[0].get("high") or {}).get("value")
            v = q["value"]
            said = (
                "high"
                if high is not None and v > high
                else "low"
                if low is not None and v < low
                else "normal"
            )
            if said != _FLAG[flags[0]]:
                continue
            del item["interpretation"]
            n += 1
    return n


_QUALITATIVE = {
    "10828004": "Positive",
    "260385009": "Negative",
    "260373001": "Detected",
    "260415000": "Not detected",
}


def qualitative_as_string(drop_interpretation: bool) -> Transform:
    """``valueCodeableConcept`` SNOMED Positive/Negative/Detected/Not detected → the same
    answer as ``valueString`` (and, if asked, no ``interpretation``)."""

    def transform(files: Files) -> int:
        n = 0
        for o in resources(files, "Observation"):
            cc = o.get("valueCodeableConcept")
            codings = (cc or {}).get("coding") or []
            answer = next(
                (_QUALITATIVE[c["code"]] for c in codings if c.get("code") in _QUALITATIVE), None
            )
            if answer is None:
                continue
            del o["valueCodeableConcept"]
            o["valueString"] = answer.upper() if n % 2 else answer
            if drop_interpretation:
                o.pop("interpretation", None)
            n += 1
        return n

    return transform


# --- times and files --------------------------------------------------------------------------
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def offsets_changed(files: Files) -> int:
    """Every date-time with an offset written at another offset, the same instant
    (``2025-02-10T22:00:00-05:00`` → ``2025-02-11T08:30:00+05:30`` and so on, alternating)."""
    zones = [timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]
    count = [0]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and _DATETIME.match(node):
            dt = datetime.fromisoformat(node.replace("Z", "+00:00"))
            count[0] += 1
            return dt.astimezone(zones[count[0] % 2]).isoformat()
        return node

    for name, rows in files.items():
        files[name] = [walk(r) for r in rows]
    return count[0]


def file_order_reversed(files: Files) -> int:
    """Resources in reverse order, in files whose names sort in reverse."""
    names = sorted(files)
    renamed = {}
    for i, name in enumerate(reversed(names)):
        head, _, tail = name.rpartition("/")
        renamed[f"{head}/{i:03d}-{tail}" if head else f"{i:03d}-{tail}"] = files[name][::-1]
    files.clear()
    files.update(renamed)
    return sum(1 for rows in renamed.values() if len(rows) > 1) + len(names)


def file_split(files: Files) -> int:
    """Each file split in three (a Bulk server splitting a type), in another directory each."""
    out: Files = {}
    n = 0
    for name, rows in files.items():
        third = max(1, -(-len(rows) // 3))
        for part in range(3):
            chunk = rows[part * third : (part + 1) * third]
            if chunk:
                out[f"part{2 - part}/{name}"] = chunk
        n += len(rows) > 1
    files.clear()
    files.update(out)
    return n
