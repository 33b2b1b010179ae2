"""The structure of rule and value-set files, as pydantic models (``extra="forbid"``).

This layer checks shape and types only; :mod:`plugin.rules.validators` checks meaning
(value-set references, code shapes, LOINC check digits, duplicate ids). The key
order and meanings are documented in ``rules/README.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(h|d|w|y)\s*$")
_UNIT = {"h": 1 / 24, "d": 1.0, "w": 7.0, "y": 365.0}


def parse_duration(value: Any) -> timedelta:
    """``"30d"`` → 30 days; units h, d, w, y (365 d). Raises ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not (m := _DURATION.match(value)):
        raise ValueError(f"expected a duration such as 30d, 72h, 2w or 1y, got {value!r}")
    return timedelta(days=float(m.group(1)) * _UNIT[m.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Status(StrEnum):
    STABLE = "stable"
    TEST = "test"
    EXPERIMENTAL = "experimental"
    DEPRECATED = "deprecated"
    UNSUPPORTED = "unsupported"


class Level(IntEnum):
    """Ordered: a higher level sorts first in the worklist when no model is used."""

    informational = 0
    low = 1
    medium = 2
    high = 3
    critical = 4


def _level(value: Any) -> Any:
    if isinstance(value, str) and value in Level.__members__:
        return Level[value]
    raise ValueError(f"expected one of {', '.join(Level.__members__)}, got {value!r}")


LevelField = Annotated[Level, BeforeValidator(_level)]
CodeRefs = list[Annotated[str, Field(pattern=r"^[a-z0-9_]+(?::[a-z0-9_.:/-]+)?:\S+$")]]
Str1 = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KindName = Literal[
    "encounter", "condition", "observation", "procedure", "report", "order", "medication",
    "death", "transfer",
]  # fmt: skip


class Selector(Strict):
    kind: KindName | list[KindName]
    codes: CodeRefs | None = None
    not_codes: CodeRefs | None = None
    diagnosis: CodeRefs | None = None
    not_diagnosis: CodeRefs | None = None
    setting: list[Literal["ED", "IP", "OBS", "AMB", "ICU", "VR", "HH", "OTHER"]] | None = None
    released: bool | None = None
    planned: bool | None = None
    icu: bool | None = None
    disposition: list[Str1] | None = None
    not_disposition: list[Str1] | None = None
    admit_source: list[Str1] | None = None
    not_admit_source: list[Str1] | None = None
    value: (
        Annotated[str, Field(pattern=r"^\s*(>=|<=|>|<|=)\s*-?\d+(\.\d+)?\s*(\S+)?\s*$")] | None
    ) = None
    interpretation: list[Str1] | None = None
    status: list[Str1] | None = None
    not_status: list[Str1] | None = None


class Expect(Selector):
    within: Duration | None = None


class AgeBounds(Strict):
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None


class Condition(Strict):
    """One of: ``event`` (+ ``between`` and/or ``same_encounter``), ``age``, ``died_within``,
    ``sex``, or ``any`` (a list of conditions of which one must hold)."""

    event: Selector | None = None
    between: tuple[Duration, Duration] | None = None
    same_encounter: bool = False
    before_outcome: bool = False
    relative_to: Literal["index", "outcome"] = "index"
    age: AgeBounds | None = None
    died_within: Duration | None = None
    sex: list[Literal["male", "female", "other", "unknown"]] | None = None
    any: Annotated[list[Condition], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = ("event", "age", "died_within", "sex", "any")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition needs exactly one of 'event', 'age', 'died_within', 'sex', 'any'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.event is not None and self.between is None and not self.same_encounter:
            raise ValueError("an 'event' condition needs 'between' or 'same_encounter: true'")
        if self.event is None and (
            self.between is not None or self.same_encounter or self.before_outcome
        ):
            raise ValueError("'between', 'same_encounter' and 'before_outcome' go with 'event'")
        return self

    def mentions_outcome(self) -> bool:
        return (
            self.relative_to == "outcome"
            or self.before_outcome
            or any(c.mentions_outcome() for c in self.any or ())
        )


class SequenceLogic(Strict):
    type: Literal["sequence"]
    index: Selector | list[Selector]
    outcome: Selector | list[Selector]
    within: Duration
    anchor: Literal["start", "end"] = "end"
    require: list[Condition] = Field(default_factory=list)
    exclude: list[Condition] = Field(default_factory=list)


class AbsenceLogic(Strict):
    type: Literal["absence"]
    index: Selector | list[Selector]
    expect_any: Annotated[list[Expect], Field(min_length=1)]
    within: Duration
    anchor: Literal["start", "end"] = "start"
    require: list[Condition] = Field(default_factory=list)
    exclude: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_outcome(self) -> AbsenceLogic:
        if any(c.mentions_outcome() for c in (*self.require, *self.exclude)):
            raise ValueError("an absence rule has no outcome: 'relative_to: outcome' is invalid")
        return self


Logic = Annotated[SequenceLogic | AbsenceLogic, Field(discriminator="type")]


class Published(Strict):
    ppv: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=0)] | None = None
    window: str | None = None
    exclusions: str | list[str] | None = None
    citation: str | None = None
    population: str | None = None
    note: str | None = None


class Related(Strict):
    id: UUID
    type: Literal["derived", "obsolete", "merged", "renamed", "similar"]


class RuleSpec(Strict):
    title: Str1
    id: UUID
    status: Status
    level: LevelField
    description: Str1
    references: Annotated[list[Str1], Field(min_length=1)]
    author: str | None = None
    date: dt.date | str | None = None
    modified: dt.date | str | None = None
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.[a-z0-9._-]+$")]] = Field(
        default_factory=list
    )
    falsepositives: Annotated[list[Str1], Field(min_length=1)]
    published: Published | None = None
    related: list[Related] = Field(default_factory=list)
    logic: Logic
    tests: str | None = None


class ValueSetSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    version: str | dt.date
    title: Str1
    source: Str1
    description: str | None = None
    codes: dict[
        Literal[
            "icd10",
            "icd9",
            "icd10pcs",
            "snomed",
            "loinc",
            "cpt",
            "hcpcs",
            "rxnorm",
            "location",
            "setting",
        ],
        list[str | int],
    ] = Field(default_factory=dict)
    include: list[str] = Field(default_factory=list)


class TestCase(Strict):
    name: Str1
    expect: Literal["flag", "no_flag", "todo_flag", "todo_no_flag"]
    patient: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    fixture: str | None = None
    as_of: str | dt.date | None = None
    count: int | None = None

    @model_validator(mode="after")
    def _events_or_fixture(self) -> TestCase:
        if (self.events is None) == (self.fixture is None):
            raise ValueError("a test case needs exactly one of 'events' or 'fixture'")
        return self


class TestFile(Strict):
    cases: Annotated[list[TestCase], Field(min_length=1)]


def all_keys() -> set[str]:
    """Every key any rule-file model accepts (for "did you mean" suggestions)."""
    keys: set[str] = set()
    for model in (
        Selector,
        Expect,
        AgeBounds,
        Condition,
        SequenceLogic,
        AbsenceLogic,
        Published,
        Related,
        RuleSpec,
        ValueSetSpec,
        TestCase,
        TestFile,
    ):
        keys.update(model.model_fields)
    return keys
