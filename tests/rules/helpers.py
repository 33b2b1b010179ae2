"""Small timeline builders for engine tests (no FHIR involved)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from plugin.rules import load_rules
from plugin.rules.engine import Rule
from plugin.timeline.model import (
    Code,
    EncounterDetail,
    Event,
    Kind,
    LocationStay,
    PatientInfo,
    Setting,
    Timeline,
)

T0 = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)


def enc(
    n: int,
    at: timedelta,
    setting: Setting,
    *,
    dx: tuple[str, ...] = (),
    hours: float = 4,
    released: bool = False,
    planned: bool = False,
    disposition: str | None = "home",
    icu_after: float | None = None,
) -> Event:
    start = T0 + at
    end = start + timedelta(hours=hours)
    locations = ()
    if icu_after is not None:
        locations = (
            LocationStay(name="MICU", start=start + timedelta(hours=icu_after), end=end, icu=True),
        )
    return Event(
        patient="p1",
        t=start,
        end=end,
        kind=Kind.ENCOUNTER,
        system="setting",
        code=setting.value,
        source=f"Encounter/e{n}",
        detail=EncounterDetail(
            setting=setting,
            class_code=setting.value,
            disposition=disposition,
            diagnoses=tuple(Code("icd10", c) for c in dx),
            released=released,
            planned=planned,
            locations=locations,
        ),
    )


def obs(
    n: int,
    at: timedelta,
    loinc: str,
    value: float | None,
    unit: str | None,
    interp: tuple[str, ...] = (),
) -> Event:
    return Event(
        patient="p1",
        t=T0 + at,
        kind=Kind.OBSERVATION,
        system="loinc",
        code=loinc,
        value=value,
        unit=unit,
        interpretation=interp,
        source=f"Observation/o{n}",
    )


def proc(n: int, at: timedelta, cpt: str) -> Event:
    return Event(
        patient="p1",
        t=T0 + at,
        kind=Kind.PROCEDURE,
        system="cpt",
        code=cpt,
        source=f"Procedure/pr{n}",
    )


def cond(n: int, at: timedelta, icd: str) -> Event:
    return Event(
        patient="p1",
        t=T0 + at,
        kind=Kind.CONDITION,
        system="icd10",
        code=icd,
        source=f"Condition/c{n}",
    )


def timeline(
    *events: Event,
    birth: date | None = date(1950, 6, 1),
    sex: str = "female",
    deceased: datetime | None = None,
) -> Timeline:
    return Timeline(
        patient=PatientInfo(id="p1", birth_date=birth, sex=sex, deceased=deceased),
        events=tuple(sorted(events, key=lambda e: (e.t, e.kind.value, e.source))),
    )


def write_rules(tmp: Path, logic: str, *, valuesets: dict[str, str] | None = None) -> Path:
    """A rules dir with one rule whose logic block is ``logic`` (YAML, indented 2)."""
    (tmp / "valuesets").mkdir(parents=True, exist_ok=True)
    for name, body in (valuesets or {}).items():
        (tmp / "valuesets" / f"{name}.yaml").write_text(body)
    body = (
        "title: Test rule\n"
        "id: 0f6e2a8e-9a55-4d2b-8a8e-5f2c1c7d0a11\n"
        "status: stable\nlevel: high\ndescription: test\n"
        "references: [PMID 1]\nfalsepositives: [none]\n"
        "logic:\n" + logic
    )
    (tmp / "test_rule_file.yaml").write_text(body)
    return tmp


def one_rule(tmp: Path, logic: str, **kw: dict[str, str]) -> Rule:
    rules = load_rules(write_rules(tmp, logic, **kw))
    assert len(rules.rules) == 1
    return rules.rules[0]
