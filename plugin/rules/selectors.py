"""Compiled selectors: a rule's ``index``/``outcome``/``expect_any``/condition events.

A :class:`Matcher` is built once per rule at load time (value sets resolved, thresholds
parsed) and then tested against every event of every patient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from plugin.normalize.lookups import molar_mass
from plugin.rules.codesets import CodeSet
from plugin.rules.schema import Selector
from plugin.rules.units import Threshold
from plugin.text import affirmed_concepts
from plugin.timeline.model import Code, Event, Kind

Predicate = Callable[[Event], bool]


def resolve_codes(refs: list[str], valuesets: Mapping[str, CodeSet]) -> CodeSet:
    """``["valueset:stroke", "icd10:I63"]`` → one CodeSet. Unknown value sets are a
    validator error, reported before compilation; here they raise KeyError."""
    out = CodeSet()
    for ref in refs:
        system, _, code = ref.partition(":")
        if system == "valueset":
            out.update(valuesets[code])
        else:
            out.add(system, code)
    return out


@dataclass(frozen=True, slots=True)
class Matcher:
    kinds: frozenset[Kind]
    checks: tuple[Predicate, ...]
    description: str
    within: timedelta | None = None  # Expect only

    def __call__(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        return all(check(event) for check in self.checks)


def _detail_is(attr: str, wanted: bool) -> Predicate:
    def check(e: Event) -> bool:
        return e.detail is not None and bool(getattr(e.detail, attr)) is wanted

    return check


def _detail_in(attr: str, values: list[str], negate: bool) -> Predicate:
    wanted = {v.lower() for v in values}

    def check(e: Event) -> bool:
        got = getattr(e.detail, attr, None) if e.detail is not None else None
        inside = got is not None and got.lower() in wanted
        return not inside if negate else inside

    return check


def principal_or_all(e: Event) -> tuple[Code, ...]:
    """The encounter's principal diagnosis codes, or all its diagnoses when the record does
    not say which is principal (``principal: true`` then tests what ``diagnosis`` tests)."""
    return (e.detail.principal if e.detail is not None else ()) or e.diagnoses


def _codes_check(cs: CodeSet, *, diagnoses: bool, negate: bool, principal: bool) -> Predicate:
    def check(e: Event) -> bool:
        codes = (principal_or_all(e) if principal else e.diagnoses) if diagnoses else e.codes
        hit = cs.any_of(codes)
        return not hit if negate else hit

    return check


def _threshold_check(threshold: Threshold) -> Predicate:
    def check(e: Event) -> bool:
        # the analyte's molar mass (molar_mass table) allows mg/dL <-> mmol/L, nothing else
        g_per_mol = molar_mass(e.system, e.code) if e.code else None
        return threshold.test(e.value, e.unit, e.comparator, g_per_mol=g_per_mol)

    return check


_ABNORMAL = {"high": frozenset({"high"}), "low": frozenset({"low"}),
             "any": frozenset({"high", "low", "abnormal"})}  # fmt: skip


def _text_check(concepts: frozenset[str]) -> Predicate:
    """An affirmed, current, patient mention of one of ``concepts`` in the report's narrative
    (ConText, :mod:`plugin.text`)."""

    def check(e: Event) -> bool:
        return e.narrative is not None and not concepts.isdisjoint(affirmed_concepts(e.narrative))

    return check


def compile_selector(sel: Selector, valuesets: Mapping[str, CodeSet]) -> Matcher:
    kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
    checks: list[Predicate] = []
    words = [("/".join(kinds))]
    for refs, diagnoses, negate in (
        (sel.codes, False, False),
        (sel.not_codes, False, True),
        (sel.diagnosis, True, False),
        (sel.not_diagnosis, True, True),
    ):
        if refs:
            cs = resolve_codes(refs, valuesets)
            principal = diagnoses and bool(sel.principal)
            checks.append(_codes_check(cs, diagnoses=diagnoses, negate=negate, principal=principal))
            if not negate:
                what = ("principal " if principal else "") + (
                    "diagnosis " if diagnoses else "codes "
                )
                words.append(what + ", ".join(refs))
    if sel.setting:
        settings = frozenset(sel.setting)
        checks.append(lambda e: e.detail is not None and e.detail.setting.value in settings)
        words.append("setting " + "/".join(sel.setting))
    if sel.released is not None:
        checks.append(_detail_is("released", sel.released))
    if sel.planned is not None:
        checks.append(_detail_is("planned", sel.planned))
    if sel.icu is not None:
        want = sel.icu

        def icu(e: Event) -> bool:
            d = e.detail
            has = d is not None and (d.setting.value == "ICU" or any(s.icu for s in d.locations))
            return has is want

        checks.append(icu)
    for attr, values, negate in (
        ("disposition", sel.disposition, False),
        ("disposition", sel.not_disposition, True),
        ("admit_source", sel.admit_source, False),
        ("admit_source", sel.not_admit_source, True),
    ):
        if values:
            checks.append(_detail_in(attr, values, negate))
    if sel.value is not None:
        threshold = Threshold.parse(sel.value)
        checks.append(_threshold_check(threshold))
        words.append(f"value {threshold}")
    if sel.interpretation:
        interp = frozenset(i.upper() for i in sel.interpretation)
        checks.append(lambda e: any(i in interp for i in e.interpretation))
    if sel.positive is not None:
        want_positive = sel.positive
        checks.append(lambda e: e.positive is want_positive)
        words.append("positive" if want_positive else "negative")
    if sel.abnormal is not None:
        flags = _ABNORMAL[sel.abnormal]
        checks.append(lambda e: e.abnormal in flags)
        words.append(f"abnormal {sel.abnormal}")
    if sel.text:
        concepts = frozenset(sel.text)
        checks.append(_text_check(concepts))
        words.append("text " + ", ".join(sel.text))
    if sel.status:
        st = frozenset(sel.status)
        checks.append(lambda e: e.status in st)
    if sel.not_status:
        nst = frozenset(sel.not_status)
        checks.append(lambda e: e.status not in nst)
    within = getattr(sel, "within", None)
    return Matcher(frozenset(Kind(k) for k in kinds), tuple(checks), "; ".join(words), within)


def compile_any(
    sel: Selector | list[Selector], valuesets: Mapping[str, CodeSet]
) -> tuple[Matcher, ...]:
    items = sel if isinstance(sel, list) else [sel]
    return tuple(compile_selector(s, valuesets) for s in items)
