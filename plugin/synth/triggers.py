"""Which trigger rules fire on a generated chart: the labeller's own reading of the catalogue.

This mirrors the rules in ``rules/core`` (SP-1, SP-2, SP-3, ED-1 72 h / 10 d, PC-3, PC-4,
TR-1, TR-7) on the chart's facts, restricted to the codes the generator writes. It exists so
that every trigger-positive index event gets a row in ``labels.csv``, planted or not;
``tests/synth`` and ``bench/synth_bench.py`` check it against the real rule engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from plugin.synth import plant_imaging
from plugin.synth.chart import Chart, EncFact

Hit = tuple[str, str, datetime]  # (trigger, index reference, index time)

DIZZY = ("R42", "H810", "H811", "H812", "H813", "H818", "H819", "H83")
HEADACHE = ("R51", "G44", "G430", "G431", "G432", "G433", "G434", "G435", "G437", "G438",
            "G439")
STROKE = ("I60", "I61", "I62", "I63", "G450", "G451", "G452", "G453", "G458", "G459", "G436")
ABDOMINAL = ("R10",)
INJURY = ("S", "T0", "T10", "T11", "T12", "T13", "T14")
PSYCH = tuple(f"F{n}" for n in range(20, 32))
RISK_ICD = ("I48", "I20", "I21", "I22", "I23", "I24", "I25", "E08", "E09", "E10", "E11", "E13",
            "I10", "I11", "I12", "I13", "I15", "E78", "F17", "I65", "I66", "I67", "I69", "Z8673",
            "Z720")
RISK_SNOMED = ("49436004", "38341003", "59621000", "55822004", "44054006", "46635009",
               "73211009", "15777000", "414545008", "53741008", "22298006", "230690007",
               "266257000", "449868002")
CRC = ("C18", "C19", "C20", "C210", "C211", "C218")
HOSPICE = ("icd10:Z515", "snomed:385763009", "snomed:305336008", "snomed:103735009")
NONADHERENCE = ("Z9112", "Z9113", "Z9114", "Z9119")
COLONOSCOPY = {str(c) for c in range(45378, 45388)} | {"44387", "44388", "44389", "44391",
                                                        "44392", "44394", "45355", "45391",
                                                        "45392"}
FIT, TSH = "29771-3", "3016-3"
H = timedelta(hours=1)
D = timedelta(days=1)


def _any(codes: tuple[str, ...], prefixes: tuple[str, ...]) -> bool:
    return any(c.startswith(prefixes) for c in codes)


def _released(e: EncFact, admissions: list[EncFact]) -> bool:
    if e.setting not in ("ED", "AMB") or e.disposition == "admitted":
        return False
    horizon = e.end + 24 * H
    return not any(a.start <= horizon and a.end >= e.start for a in admissions)


def _first_after(encs: list[EncFact], anchor: datetime, within: timedelta,
                 ok: object) -> EncFact | None:
    for o in encs:
        if anchor < o.start <= anchor + within and ok(o):  # type: ignore[operator]
            return o
    return None


def _unplanned(o: EncFact) -> bool:
    return o.setting == "IP" and not o.planned


def hits(chart: Chart) -> Iterator[Hit]:
    encs = sorted(chart.encounters, key=lambda e: e.start)
    admissions = [e for e in encs if e.setting == "IP"]
    for e in encs:
        if e.setting == "ED" and _released(e, admissions):
            yield from _ed_hits(chart, e, admissions)
        elif e.setting == "AMB":
            if _first_after(admissions, e.end, 14 * D, _unplanned):
                yield ("PC-3", e.ref, e.start)
            if _first_after(encs, e.end, 14 * D, lambda o: o.setting == "ED"):
                yield ("PC-4", e.ref, e.start)
    yield from _result_hits(chart)
    yield from plant_imaging.hits(chart)  # TR-3 / TR-5 report-text cases (issue 11)


def _ed_hits(chart: Chart, e: EncFact, admissions: list[EncFact]) -> Iterator[Hit]:
    # SP-1 reads the admission's principal diagnosis (EncFact.dx is principal first, as the
    # generator ranks Encounter.diagnosis); SP-2 any diagnosis of the admission.
    principal = _first_after(admissions, e.end, 30 * D, lambda o: _any(o.dx[:1], STROKE))
    stroke_outcome = _first_after(admissions, e.end, 30 * D, lambda o: _any(o.dx, STROKE))
    if not _any(e.dx, STROKE) and stroke_outcome is not None:
        if principal is not None and _any(e.dx, DIZZY + HEADACHE):
            yield ("SP-1", e.ref, e.start)
        if _any(e.dx, DIZZY) and _risk_factor(chart, e.end):
            yield ("SP-2", e.ref, e.start)
    if _first_after(admissions, e.end, 10 * D, _ed1_outcome):
        yield ("ED-1", e.ref, e.start)
    if (
        _any(e.dx, ABDOMINAL)
        and _first_after(admissions, e.end, 10 * D, _unplanned)
        and any(o.code == "8310-5" and o.value is not None and (o.value >= 38.0 or o.value < 36.0)
                and e.end - 24 * H <= o.t <= e.end for o in chart.obs)
    ):
        yield ("SP-3", e.ref, e.start)


def _ed1_outcome(o: EncFact) -> bool:
    return _unplanned(o) and not _any(o.dx[:1], INJURY) and not _any(o.dx[:1], PSYCH)


def _risk_factor(chart: Chart, anchor: datetime) -> bool:
    lo = anchor - 3650 * D
    for t, codes in chart.conds:
        if lo <= t <= anchor:
            for c in codes:
                system, _, code = c.partition(":")
                if (system == "icd10" and code.startswith(RISK_ICD)) or (
                    system == "snomed" and code in RISK_SNOMED
                ):
                    return True
    return False


def _cond_between(chart: Chart, lo: datetime, hi: datetime, pred: object) -> bool:
    return any(lo <= t <= hi and any(pred(c) for c in codes)  # type: ignore[operator]
               for t, codes in chart.conds)


def _result_hits(chart: Chart) -> Iterator[Hit]:
    for o in chart.obs:
        if o.code == FIT and o.positive and _tr1(chart, o.t):
            yield ("TR-1", o.ref, o.t)
        elif o.code == TSH and o.value is not None and o.value > 10 and _tr7(chart, o.ref, o.t):
            yield ("TR-7", o.ref, o.t)


def _tr1(chart: Chart, t: datetime) -> bool:
    age = chart.age_at(t)
    if age < 40 or age > 75:
        return False
    if chart.deceased is not None and t < chart.deceased <= t + 60 * D:
        return False
    scopes = [p.t for p in chart.procs if p.code in COLONOSCOPY]
    if any(t <= s <= t + 60 * D for s in scopes) or any(t - 1095 * D <= s <= t - D
                                                        for s in scopes):
        return False
    if any(e.service == "gi" and t <= e.start <= t + 60 * D for e in chart.encounters):
        return False
    if _cond_between(chart, t - 365 * D, t, lambda c: c.startswith(tuple(
            "icd10:" + p for p in CRC))):
        return False
    return not _cond_between(chart, t - 365 * D, t + 60 * D, lambda c: c in HOSPICE)


def _tr7(chart: Chart, ref: str, t: datetime) -> bool:
    age = chart.age_at(t)
    if age < 18 or age > 100:
        return False
    levo = [m.t for m in chart.meds if m.code == "levothyroxine"]
    if not any(t - 365 * D <= m <= t for m in levo):
        return False
    if any(t <= m <= t + 30 * D for m in levo):
        return False
    if any(o.code == TSH and o.ref != ref and t <= o.t <= t + 60 * D for o in chart.obs):
        return False
    if any(e.setting in ("ED", "IP") and t - 24 * H <= e.start <= t + 24 * H
           for e in chart.encounters):
        return False
    return not _cond_between(chart, t - 365 * D, t, lambda c: c.startswith(tuple(
        "icd10:" + p for p in NONADHERENCE)))
