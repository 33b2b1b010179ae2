"""Semantic checks on rules and value sets (the layer after the pydantic schema).

Each check returns :class:`~plugin.errors.RuleProblem` s with the file location of
the offending value. Cross-file checks (duplicate ids, duplicate value-set names)
run once every file is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from plugin.errors import RuleProblem
from plugin.rules.codesets import CodeSet
from plugin.rules.schema import is_ever
from plugin.rules.spans import Path_, SourceMap
from plugin.rules.units import Threshold

CODE_SHAPES: dict[str, re.Pattern[str]] = {
    "icd10": re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$"),
    "icd9": re.compile(r"^(V\d{2}|E\d{3}|\d{3})(\.?\d{1,2})?$"),
    "icd10pcs": re.compile(r"^[0-9A-HJ-NP-Z]{1,7}$"),
    "snomed": re.compile(r"^[1-9]\d{5,17}$"),
    "loinc": re.compile(r"^\d{1,7}-\d$"),
    "cpt": re.compile(r"^\d{4}[0-9FTU]$"),
    "hcpcs": re.compile(r"^[A-V]\d{4}$"),
    "rxnorm": re.compile(r"^\d{1,9}$"),
    "location": re.compile(r"^(icu|ward|ed|procedural|observation|other)$"),
    "setting": re.compile(r"^(ED|IP|OBS|AMB|ICU|VR|HH|OTHER)$"),
}
FILE_NAME = re.compile(r"^[a-z0-9_]{10,90}\.yaml$")


def loinc_check_digit(number: str) -> int:
    """LOINC mod-10 check digit of the part before the dash (Luhn on the digits)."""
    digits = [int(c) for c in number]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def verhoeff_ok(number: str) -> bool:
    """SNOMED CT identifiers end in a Verhoeff check digit."""
    d = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ]
    p = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ]
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def check_code(system: str, code: str) -> str | None:
    """Why ``code`` does not look like a ``system`` code, or None when it does."""
    parts = code.split("-", 1) if system in {"cpt", "hcpcs", "icd10", "icd9"} else [code]
    for part in parts:
        shape = CODE_SHAPES.get(system)
        value = part.upper() if system in {"icd10", "icd9", "icd10pcs"} else part
        if shape is not None and not shape.match(value):
            return f"'{code}' does not look like a {system} code"
    if system == "loinc":
        number, _, check = code.partition("-")
        want = loinc_check_digit(number)
        if int(check) != want:
            return f"LOINC '{code}' has a wrong check digit (expected {number}-{want})"
    if system == "snomed" and not verhoeff_ok(code):
        return f"SNOMED CT id '{code}' fails its Verhoeff check digit"
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def walk_code_refs(data: Any, at: Path_ = ()) -> Iterable[tuple[Path_, str]]:
    """Every ``system:code`` string under a rule's ``logic`` (codes, diagnosis, ...)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k in {"codes", "not_codes", "diagnosis", "not_diagnosis"} and isinstance(v, list):
                for i, ref in enumerate(v):
                    if isinstance(ref, str):
                        yield (*at, k, i), ref
            else:
                yield from walk_code_refs(v, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk_code_refs(v, (*at, i))


def walk_thresholds(data: Any, at: Path_ = ()) -> Iterable[tuple[Path_, str]]:
    if isinstance(data, dict):
        for k, v in data.items():
            if k == "value" and isinstance(v, str):
                yield (*at, k), v
            else:
                yield from walk_thresholds(v, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk_thresholds(v, (*at, i))


def check_rule_refs(
    data: Mapping[str, Any], smap: SourceMap, valueset_names: set[str]
) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    for at, ref in walk_code_refs(data.get("logic", {}), ("logic",)):
        system, _, code = ref.partition(":")
        if system == "valueset":
            if code not in valueset_names:
                problems.append(
                    smap.problem(
                        at,
                        "R201",
                        f"unknown value set '{code}'{did_you_mean(code, valueset_names)}",
                    )
                )
        elif system not in CODE_SHAPES:
            problems.append(
                smap.problem(
                    at,
                    "R202",
                    f"unknown code system '{system}' in '{ref}' (expected valueset or one of "
                    f"{', '.join(CODE_SHAPES)}){did_you_mean(system, CODE_SHAPES)}",
                )
            )
        elif (why := check_code(system, code)) is not None:
            problems.append(smap.problem(at, "R203", why))
    for at, text in walk_thresholds(data.get("logic", {}), ("logic",)):
        try:
            th = Threshold.parse(text)
        except ValueError as exc:
            problems.append(smap.problem(at, "R204", str(exc)))
            continue
        if not th.known_unit():
            problems.append(smap.problem(at, "R205", f"unknown unit '{th.unit}' in '{text}'"))
    problems += check_ever(data.get("logic", {}), smap, ("logic",))
    return problems


def check_valueset_codes(data: Mapping[str, Any], smap: SourceMap) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    for system, codes in (data.get("codes") or {}).items():
        if not isinstance(codes, list):
            continue
        for i, code in enumerate(codes):
            why = check_code(system, str(code))
            if why is not None:
                problems.append(smap.problem(("codes", system, i), "R301", why))
    return problems


# --- `ever` only bounds a `between` window ---------------------------------------------------
def check_ever(data: Any, smap: SourceMap, at: Path_ = ()) -> list[RuleProblem]:
    """``ever`` is an unbounded end of a ``between`` window; as a ``within`` or
    ``died_within`` it would never close (an absence rule would never fire)."""
    problems: list[RuleProblem] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k in {"within", "died_within"} and is_ever(v):
                problems.append(
                    smap.problem(
                        (*at, k),
                        "R206",
                        f"'{k}: {v}': 'ever' only bounds a 'between' window "
                        "(e.g. between: [-ever, 0d]); give a duration such as 60d or 6mo",
                    )
                )
            else:
                problems += check_ever(v, smap, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            problems += check_ever(v, smap, (*at, i))
    return problems


# --- warnings: `codes:` and `diagnosis:` swapped on an encounter selector ------------------
DIAGNOSIS_SYSTEMS = frozenset({"icd10", "icd9"})
ACT_SYSTEMS = frozenset({"loinc", "cpt", "hcpcs", "icd10pcs"})  # tests and procedures
_NEITHER = frozenset({"rxnorm", "location", "setting"})


def code_kind(systems: set[str] | frozenset[str]) -> str | None:
    """``"diagnosis"`` when the systems are ICD-10/ICD-9 (SNOMED CT may sit beside them: it
    names disorders and procedures alike, so it decides nothing), ``"act"`` when they are
    LOINC/CPT/HCPCS/ICD-10-PCS without ICD-10/ICD-9, else None (mixed, SNOMED only, ...)."""
    if systems & DIAGNOSIS_SYSTEMS and not systems & (ACT_SYSTEMS | _NEITHER):
        return "diagnosis"
    if systems & ACT_SYSTEMS and not systems & DIAGNOSIS_SYSTEMS:
        return "act"
    return None


def _selectors(data: Any, at: Path_) -> Iterable[tuple[Path_, Mapping[str, Any]]]:
    """Every selector under ``logic`` (a mapping with a ``kind``), with its path."""
    if isinstance(data, dict):
        if "kind" in data:
            yield at, data
        for k, v in data.items():
            yield from _selectors(v, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _selectors(v, (*at, i))


def check_code_kinds(
    data: Mapping[str, Any], smap: SourceMap, valuesets: Mapping[str, CodeSet]
) -> list[RuleProblem]:
    """Warnings (R211, R212) for an encounter selector whose ``codes:`` name diagnoses (an
    encounter's own codes are its setting, type and serviceType, never an ICD code) or
    whose ``diagnosis:`` names tests or procedures (never an encounter diagnosis)."""
    problems: list[RuleProblem] = []
    for at, sel in _selectors(data.get("logic", {}), ("logic",)):
        kind = sel.get("kind")
        if kind != "encounter" and kind != ["encounter"]:
            continue
        for key, wrong, code, hint in (
            ("codes", "diagnosis", "R211", "did you mean diagnosis:?"),
            ("not_codes", "diagnosis", "R211", "did you mean not_diagnosis:?"),
            ("diagnosis", "act", "R212", "did you mean codes: on a procedure, observation "
             "or order selector?"),
            ("not_diagnosis", "act", "R212", "did you mean not_codes: on a procedure, "
             "observation or order selector?"),
        ):  # fmt: skip
            refs = sel.get(key)
            if not isinstance(refs, list):
                continue
            for i, ref in enumerate(refs):
                if not isinstance(ref, str):
                    continue
                system, _, name = ref.partition(":")
                if system == "valueset":
                    if name not in valuesets:
                        continue  # reported as R201
                    systems = valuesets[name].systems()
                    what = f"value set '{name}' holds {_kind_words(wrong)} codes"
                else:
                    systems = {system}
                    what = f"'{ref}' is a {_kind_words(wrong)} code"
                if code_kind(systems) != wrong:
                    continue
                reads = (
                    "the encounter's own codes (setting, type, serviceType)"
                    if key.endswith("codes")
                    else "the encounter's diagnoses"
                )
                problems.append(
                    _warning(
                        smap.problem(
                            (*at, key, i),
                            code,
                            f"{key}: on an encounter selector matches {reads}, but {what} "
                            f"({', '.join(sorted(systems))}); {hint}",
                        )
                    )
                )
    return sorted(problems, key=lambda p: (p.location.line, p.location.col))


def _kind_words(kind: str) -> str:
    return "diagnosis" if kind == "diagnosis" else "test or procedure"


def _warning(problem: RuleProblem) -> RuleProblem:
    return dataclasses.replace(problem, severity="warning")
