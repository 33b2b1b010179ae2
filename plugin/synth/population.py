"""Generate patients: pick a scenario (or none), build the chart, label the trigger hits.

Patients are made in fixed-size chunks, each with its own RNG seeded from (seed, chunk
number), so the output does not depend on how many worker processes ran the chunks.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from plugin.synth import background as B
from plugin.synth import triggers
from plugin.synth.chart import ZONES, Chart
from plugin.synth.mix import cumulative, scenarios_for
from plugin.synth.profiles import PROFILES, Profile
from plugin.synth.scenario import Planted, Scenario

CHUNK = 1000  # patients per chunk (part of the seed derivation: changing it changes output)
YEAR = timedelta(days=365.25)


@dataclass(frozen=True, slots=True)
class Label:
    patient_id: str
    index_ref: str
    index_time: str
    trigger: str
    scenario: str
    is_mod: int
    missed_dx: str


@dataclass(frozen=True, slots=True)
class Frame:
    """The calendar of the population: the record runs from ``start`` to ``end``."""

    start: datetime
    end: datetime
    index_lo: datetime
    index_hi: datetime

    @classmethod
    def for_as_of(cls, as_of: date) -> Frame:
        end = datetime(as_of.year, as_of.month, as_of.day) - timedelta(days=120)
        start = end - 6 * YEAR
        return cls(start, end, start + 2 * YEAR, end - timedelta(days=360))


def chunk_rng(seed: int, chunk: int) -> random.Random:
    return random.Random(f"dxsafety-synth:{seed}:{chunk}")  # noqa: S311 (simulation, not crypto)


def make_patient(
    rng: random.Random, frame: Frame, cum: list[float], profile: Profile = PROFILES["default"]
) -> tuple[Chart, list[Label], list[Label]]:
    """One patient: (chart, label rows, excluded-case rows)."""
    pick = bisect.bisect_right(cum, rng.random())
    pool = scenarios_for(profile.name)
    return plant_patient(rng, frame, pool[pick] if pick < len(pool) else None, profile)


def plant_patient(
    rng: random.Random,
    frame: Frame,
    scenario: Scenario | None,
    profile: Profile = PROFILES["default"],
) -> tuple[Chart, list[Label], list[Label]]:
    """One patient with ``scenario`` planted (None: background care only)."""
    if scenario is not None:
        lo, mode, hi = scenario.age
        age = rng.triangular(lo, hi, mode)
        t = frame.index_lo + (frame.index_hi - frame.index_lo) * rng.random()
        male = rng.random() < scenario.male
        at = t
    else:
        age, male, at = B.population_age(rng), rng.random() < 0.49, frame.end
        t = at
    offset, suffix, _ = rng.choices(ZONES, weights=[z[2] for z in ZONES])[0]
    chart = Chart(
        rng=rng,
        pid="",
        birth=B.birth_for(rng, age, at),
        sex="male" if male else "female",
        offset=timedelta(minutes=offset),
        suffix=suffix,
        dotted=rng.random() < 0.6,
        fahrenheit=suffix in ("-05:00", "-06:00") and rng.random() < 0.4,
    )
    chart.pid = chart.uid()
    age_start = max(chart.age_at(frame.start), 0)
    boost = scenario.boost if scenario is not None else None
    for name in sorted(B.chronic_conditions(rng, max(age_start, 18 if age >= 18 else 0),
                                            chart.sex, boost)):
        if name in ("metastatic_cancer", "dementia"):
            onset = t - timedelta(days=rng.uniform(60, 500))
        else:
            onset = frame.start - timedelta(days=rng.uniform(0, 4 * 365))
        chart.problem(name, onset)
    planted: Planted | None = scenario.plant(chart, t) if scenario is not None else None
    B.care(chart, frame.start, frame.end, [planted.span] if planted else [],
           pc_scale=profile.pc_rate, ed_scale=profile.ed_rate)
    chart.patient()
    return chart, *_labels(chart, scenario, planted)


def _labels(
    chart: Chart, scenario: Scenario | None, planted: Planted | None
) -> tuple[list[Label], list[Label]]:
    rows: dict[tuple[str, str], Label] = {}
    for trig, ref, t in triggers.hits(chart):
        if (trig, ref) in rows:
            continue
        mine = scenario is not None and planted is not None and ref in planted.index_refs
        if mine and scenario is not None and planted is not None:
            rows[trig, ref] = Label(chart.pid, ref, _iso(t), trig, scenario.name,
                                    int(scenario.is_mod), planted.missed_dx)
        else:
            rows[trig, ref] = Label(chart.pid, ref, _iso(t), trig, "background", 0, "")
    excluded: list[Label] = []
    if scenario is not None and planted is not None and scenario.excluded:
        ref = planted.index_refs[0]
        if (scenario.trigger, ref) not in rows:
            t = _index_time(chart, ref)
            excluded.append(Label(chart.pid, ref, _iso(t), scenario.trigger, scenario.name, 0, ""))
    return list(rows.values()), excluded


def _index_time(chart: Chart, ref: str) -> datetime:
    for e in chart.encounters:
        if e.ref == ref:
            return e.start
    for o in chart.obs:
        if o.ref == ref:
            return o.t
    raise LookupError(ref)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds") + "Z"


def generate_chunk(
    seed: int, chunk: int, count: int, as_of: date, profile: Profile = PROFILES["default"]
) -> tuple[list[Chart], list[Label], list[Label]]:
    rng = chunk_rng(seed, chunk)
    frame = Frame.for_as_of(as_of)
    cum = cumulative(profile.multiplier if profile.weights else None, scenarios_for(profile.name))
    charts, labels, excluded = [], [], []
    for _ in range(count):
        chart, rows, excl = make_patient(rng, frame, cum, profile)
        charts.append(chart)
        labels.extend(rows)
        excluded.extend(excl)
    return charts, labels, excluded
