"""A SPADE cohort with a known excess: symptom treat-and-release visits, background outcome
admissions at a constant rate, and a planted excess clustered in the days after the visit.

One plan (:func:`plan_cohort`) is rendered two ways: as flat visit rows
(:func:`visits_of_plan`, for fast statistical tests of the measure) and as FHIR resources
(:func:`write_cohort`, what ``dxsafety synth --spade-excess PAIR:PER10K`` adds beside the
population). The truth is the planted excess per 10,000 index visits.

Outcomes are placed at least 25 h after the visit starts: an admission within 24 h of an ED
visit makes the visit "admitted", not treat-and-release (``plugin.timeline.build``), so a
day-1 outcome could never be observed as a miss anyway.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson

from plugin.measure.pairs import Pair
from plugin.measure.visits import Visit
from plugin.synth.chart import Chart
from plugin.synth.codes import Dx
from plugin.timeline.model import Code, Setting

HORIZON = 365
EXCESS_MEAN_DAYS = 4.0  # planted harms cluster near the visit (half within about 3 days)
# (site, background multiplier): sites differ in baseline risk, not in the planted excess
SITES = (("Northside ED", 0.6), ("Central ED", 1.0), ("Riverside ED", 1.0), ("Hilltop ED", 1.6))
FILE_TAG = "spade"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedIndex:
    patient_id: str
    birth: date
    sex: str
    site: str
    index_t: datetime  # naive UTC
    outcome_after: timedelta | None  # first outcome admission after the visit start
    planted: bool  # the outcome is the planted excess, not background


def plan_cohort(
    seed: int,
    n: int,
    *,
    window: int,
    excess_per_10k: float,
    background_per_10k: float = 15.0,
    start: datetime = datetime(2021, 1, 1),
    end: datetime = datetime(2025, 12, 31),
) -> list[PlannedIndex]:
    """``n`` index visits between ``start`` and ``end - 365 d``; background outcomes at
    ``background_per_10k`` per 10,000 per 30 days (constant hazard, by site), and a planted
    outcome with probability ``excess_per_10k / 10,000`` within ``window`` days."""
    rng = random.Random(f"dxsafety-spade:{seed}")  # noqa: S311 (simulation, not crypto)
    span = (end - timedelta(days=HORIZON) - start).total_seconds()
    out = []
    for i in range(n):
        site, mult = SITES[rng.randrange(len(SITES))]
        t = start + timedelta(seconds=rng.uniform(0, span))
        age = rng.uniform(18.5, 90)
        birth = (t - timedelta(days=age * 365.25)).date()
        # constant daily hazard h over the year; the first event uniform given it happens
        h = background_per_10k * mult / 10_000 / 30
        after: timedelta | None = None
        if rng.random() < 1 - (1 - h) ** HORIZON:
            after = timedelta(hours=25) + timedelta(days=rng.uniform(0, HORIZON - 1.05))
        planted = rng.random() < excess_per_10k / 10_000
        if planted:
            while True:
                lag = timedelta(hours=25) + timedelta(days=rng.expovariate(1 / EXCESS_MEAN_DAYS))
                if lag < timedelta(days=window):
                    break
            if after is None or lag < after:
                after = lag
            else:
                planted = False  # background came first: the harm was not the planted one
        out.append(PlannedIndex(patient_id=f"spade-{seed}-{i}", birth=birth,
                                sex="female" if rng.random() < 0.5 else "male", site=site,
                                index_t=t, outcome_after=after, planted=planted))  # fmt: skip
    return out


def _code(entry: str) -> Code:
    system, code = entry.split(":", 1)
    return Code(system, code.replace(".", "").upper())


def visits_of_plan(plan: PlannedIndex, pair: Pair) -> list[Visit]:
    """The plan as visit rows, the shape :func:`plugin.measure.visits.visits_of` yields."""
    from datetime import UTC

    t = plan.index_t.replace(tzinfo=UTC)
    sym, dis = _code(pair.symptom.entries[0]), _code(pair.disease.entries[0])
    common = {"patient_id": plan.patient_id, "site": plan.site, "birth_date": plan.birth,
              "sex": plan.sex}  # fmt: skip
    out = [Visit(ref=f"Encounter/{plan.patient_id}-i", start=t, setting=Setting.ED,
                 released=True, diagnoses=(sym,), principal=(sym,), **common)]  # type: ignore[arg-type]
    if plan.outcome_after is not None:
        out.append(Visit(ref=f"Encounter/{plan.patient_id}-o", start=t + plan.outcome_after,
                         setting=Setting.IP, released=False, diagnoses=(dis,),
                         principal=(dis,), **common))  # type: ignore[arg-type]
    return out


def _dx(entry: str, display: str) -> Dx:
    system, code = entry.split(":", 1)
    if system != "icd10":
        raise ValueError(f"the synthetic cohort writes ICD-10 codes; {entry} is not one")
    return Dx(code, None, display)


def write_cohort(out: Path, pair: Pair, plans: list[PlannedIndex], seed: int) -> int:
    """Write the plan as FHIR NDJSON files ``<Type>.spade.ndjson`` into ``out``; returns the
    number of resources written."""
    rng = random.Random(f"dxsafety-spade-fhir:{seed}")  # noqa: S311
    sym = _dx(pair.symptom.entries[0], pair.symptom.name)
    dis = _dx(pair.disease.entries[0], pair.disease.name)
    files: dict[str, list[bytes]] = {}
    for plan in plans:
        chart = Chart(rng=rng, pid=plan.patient_id, birth=plan.birth, sex=plan.sex,
                      offset=timedelta(0), suffix="Z", dotted=True)  # fmt: skip
        t = plan.index_t
        ref = chart.encounter("ED", t, t + timedelta(hours=4), [sym], service="ed")
        _locate(chart, ref, plan.site)
        if plan.outcome_after is not None:
            a = t + plan.outcome_after
            ref = chart.encounter("IP", a, a + timedelta(days=4), [dis], disposition="home")
            _locate(chart, ref, plan.site.replace(" ED", " Hospital"))
        chart.patient()
        for rtype, _, res in chart.resources:
            files.setdefault(rtype, []).append(orjson.dumps(res))
    for rtype, lines in files.items():
        (out / f"{rtype}.{FILE_TAG}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return sum(len(v) for v in files.values())


def _locate(chart: Chart, ref: str, site: str) -> None:
    """Name the site on the encounter (``Encounter.location.display``): the stratum "site"."""
    for rtype, rid, res in chart.resources:
        if rtype == "Encounter" and f"Encounter/{rid}" == ref:
            res["location"] = [{"location": {"display": site}}]


def parse_excess(text: str) -> tuple[str, float]:
    """``PAIR:PER10K`` (``dizziness_stroke:25``) -> (pair id, excess per 10,000)."""
    pair_id, sep, value = text.rpartition(":")
    try:
        excess = float(value)
    except ValueError:
        excess = -1.0
    if not sep or not pair_id or not 0 <= excess <= 10_000:
        raise ValueError(f"--spade-excess wants PAIR:PER10K (e.g. dizziness_stroke:25), "
                         f"got {text!r}")
    return pair_id, excess


def add_planted(out: Path, spec: str, *, seed: int, n: int, end: datetime) -> tuple[Pair, int]:
    """Write a cohort of ``n`` index visits for the pair ``spec`` names, with its excess,
    beside a generated population in ``out``. Returns (pair, resources written)."""
    from plugin.measure.pairs import load_pairs

    pair_id, excess = parse_excess(spec)
    pairs = {p.id: p for p in load_pairs()}
    if pair_id not in pairs:
        raise ValueError(f"--spade-excess: no pair {pair_id!r} (one of {', '.join(sorted(pairs))})")
    pair = pairs[pair_id]
    plans = plan_cohort(seed, n, window=pair.window, excess_per_10k=excess,
                        start=end - timedelta(days=5 * 365), end=end)  # fmt: skip
    return pair, write_cohort(out, pair, plans, seed)
