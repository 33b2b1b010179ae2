"""Small labelled populations built with the real timeline builder and the real rules.

``toy_population(n, seed)`` makes ED visits for dizziness (→ stroke admission, SP-1/SP-2)
and abdominal pain with fever (→ appendicitis or sepsis admission, SP-3). Whether a case
is a true MOD depends, with noise, on plausible clinical data only (age, risk factors,
head imaging done, vital signs), the way the synthetic generator plants it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugin.rank.labels import LabelRow
from plugin.rules import RuleSet, evaluate, load_rules
from plugin.timeline.model import Finding, Timeline
from plugin.timeline.spec import timeline_from_spec

ROOT = Path(__file__).resolve().parents[2]
SPADE_RULES = ROOT / "rules" / "core" / "spade"


@dataclass
class Population:
    timelines: list[Timeline]
    labels: dict[tuple[str, str], list[LabelRow]]
    specs: list[dict]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def dizziness_spec(pid: str, rng: random.Random) -> tuple[dict, bool]:
    age = rng.randint(30, 92)
    af, htn = rng.random() < 0.25, rng.random() < 0.45
    head_ct = rng.random() < 0.5
    mod = rng.random() < _sigmoid(
        -2.4 + 0.06 * (age - 60) + 1.6 * af + 0.8 * htn + 2.2 * (not head_ct)
    )
    events: list[dict] = [
        {"t": "-400d", "setting": "AMB", "end": "30m", "id": "pc1", "disposition": "home"},
    ]
    if af:
        events.append({"t": "-400d", "code": "icd10:I48.91", "encounter": "pc1"})
    if htn:
        events.append({"t": "-400d", "code": "snomed:38341003", "encounter": "pc1"})
    events += [
        {
            "t": "0d",
            "setting": "ED",
            "end": "4h",
            "id": "ed",
            "disposition": "home",
            "diagnosis": [rng.choice(["icd10:R42", "icd10:H81.10", "icd10:R51.9"])],
        },
        {
            "t": "1h",
            "kind": "observation",
            "code": "loinc:8310-5",
            "value": 36.8,
            "unit": "Cel",
            "encounter": "ed",
        },
        {
            "t": "1h",
            "kind": "observation",
            "code": "loinc:8480-6",
            "value": rng.randint(110, 190),
            "unit": "mm[Hg]",
            "encounter": "ed",
        },
    ]
    if head_ct:
        events.append(
            {
                "t": "2h",
                "kind": "procedure",
                "code": "cpt:70450",
                "text": "CT Head WO contrast",
                "encounter": "ed",
            }
        )
    gap = rng.randint(2, 25) if mod else rng.randint(5, 28)
    events.append(
        {"t": f"{gap}d", "setting": "IP", "end": "3d", "id": "adm", "diagnosis": ["icd10:I63.9"]}
    )
    return {
        "patient": {
            "id": pid,
            "birth_date": f"{2025 - age}-03-01",
            "sex": rng.choice(["female", "male"]),
        },
        "events": events,
    }, mod


def abdominal_spec(pid: str, rng: random.Random) -> tuple[dict, bool, str]:
    age = rng.randint(18, 90)
    temp = round(rng.uniform(38.0, 40.0), 1)
    hr = rng.randint(70, 130)
    wbc = round(rng.uniform(5, 20), 1)
    imaging = rng.random() < 0.5
    mod = rng.random() < _sigmoid(
        -2.0 + 0.9 * (temp - 38.5) + 0.03 * (hr - 90) + 0.15 * (wbc - 11) + 1.8 * (not imaging)
    )
    dx = "appendicitis" if age < 55 else "sepsis"
    code = "icd10:K35.80" if dx == "appendicitis" else "icd10:A41.9"
    events: list[dict] = [
        {
            "t": "0d",
            "setting": "ED",
            "end": "5h",
            "id": "ed",
            "disposition": "home",
            "diagnosis": ["icd10:R10.9"],
        },
        {
            "t": "1h",
            "kind": "observation",
            "code": "loinc:8310-5",
            "value": temp,
            "unit": "Cel",
            "encounter": "ed",
        },
        {
            "t": "1h",
            "kind": "observation",
            "code": "loinc:8867-4",
            "value": hr,
            "unit": "/min",
            "encounter": "ed",
        },
        {
            "t": "2h",
            "kind": "observation",
            "code": "loinc:6690-2",
            "value": wbc,
            "unit": "10*3/uL",
            "ref_low": 4.5,
            "ref_high": 11.0,
            "encounter": "ed",
        },
    ]
    if imaging:
        events.append(
            {
                "t": "3h",
                "kind": "procedure",
                "code": "cpt:74177",
                "text": "CT Abdomen and Pelvis",
                "encounter": "ed",
            }
        )
    gap = rng.randint(1, 9)
    events.append(
        {
            "t": f"{gap}d",
            "setting": "IP",
            "end": "4d",
            "id": "adm",
            "diagnosis": [code if mod else "icd10:N39.0"],
        }
    )
    return (
        {
            "patient": {
                "id": pid,
                "birth_date": f"{2025 - age}-06-01",
                "sex": rng.choice(["female", "male"]),
            },
            "events": events,
        },
        mod,
        dx,
    )


def toy_population(n: int, seed: int) -> Population:
    rng = random.Random(seed)
    tls, specs = [], []
    labels: dict[tuple[str, str], list[LabelRow]] = {}
    for i in range(n):
        pid = f"s{seed}-p{i}"
        if rng.random() < 0.6:
            spec, mod = dizziness_spec(pid, rng)
            dx, scen, trig = "stroke", "dizziness_stroke", "SP-1"
        else:
            spec, mod, dx = abdominal_spec(pid, rng)
            scen, trig = "abdominal_fever", "SP-3"
        tls.append(timeline_from_spec(spec))
        specs.append(spec)
        labels[(pid, "Encounter/ed")] = [
            LabelRow(
                patient_id=pid,
                index_ref="Encounter/ed",
                trigger=trig,
                scenario=scen,
                is_mod=mod,
                missed_dx=dx if mod else "",
            )
        ]
    return Population(tls, labels, specs)


@pytest.fixture(scope="session")
def spade_rules() -> RuleSet:
    return load_rules(SPADE_RULES)


@pytest.fixture(scope="session")
def evaluator(spade_rules: RuleSet) -> Callable[[Timeline], list[Finding]]:
    def run(tl: Timeline) -> list[Finding]:
        return evaluate(spade_rules, tl)

    return run


@pytest.fixture(scope="session")
def train_pop() -> Population:
    return toy_population(900, seed=1)


@pytest.fixture(scope="session")
def test_pop() -> Population:
    return toy_population(500, seed=2)
