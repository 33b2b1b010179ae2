"""The structure of rule and value-set files, as pydantic models (``extra="forbid"``).

This layer checks shape and types only; :mod:`plugin.rules.validators` checks meaning
(value-set references, code shapes, LOINC check digits, duplicate ids). The key
order and meanings are documented in ``rules/README.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(h|d|w|mo|y)\s*$")
_UNIT = {"h": 1 / 24, "d": 1.0, "w": 7.0, "mo": 30.0, "y": 365.0}
_EVER = re.compile(r"^\s*([+-]?)\s*ever\s*$")
# ``ever``: longer than the whole datetime range (years 1-9999), so ``anchor - EVER`` reaches
# every event; the engine clamps the sum (:func:`shift`) instead of overflowing.
EVER = timedelta(days=3_660_000)


def parse_duration(value: Any) -> timedelta:
    """``"30d"`` → 30 days; units h, d, w, mo (30 d), y (365 d); ``ever`` / ``-ever`` is
    :data:`EVER` (validators allow it only in ``between``). Raises ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and (e := _EVER.match(value)):
        return -EVER if e.group(1) == "-" else EVER
    if not isinstance(value, str) or not (m := _DURATION.match(value)):
        raise ValueError(
            f"expected a duration such as 30d, 72h, 2w, 6mo, 1y or -ever, got {value!r}"
        )
    return timedelta(days=float(m.group(1)) * _UNIT[m.group(2)])


def is_ever(value: Any) -> bool:
    """Is ``value`` the text ``ever`` / ``-ever`` (before parsing)?"""
    return isinstance(value, str) and _EVER.match(value) is not None


def shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, clamped to the datetime range (``-ever`` from any anchor)."""
    try:
        return moment + delta
    except OverflowError:
        bound = datetime.min if delta < timedelta(0) else datetime.max
        return bound.replace(tzinfo=moment.tzinfo)


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


def _known_concept(name: str) -> str:
    from plugin.text import concept_names

    known = concept_names()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown text concept '{name}'{hint}; known: {', '.join(sorted(known))}")
    return name


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
    principal: Literal[True] | None = None
    # Result semantics (issue 11, Event.positive / Event.abnormal): positive: true|false;
    # abnormal: high|low|any (any = high, low or unspecified abnormal).
    positive: bool | None = None
    abnormal: Literal["high", "low", "any"] | None = None
    # Report-text concepts (plugin/text/concepts.yaml): an affirmed, current mention about the
    # patient in the report's narrative (issue 11). Only reports carry narrative.
    text: list[Annotated[str, AfterValidator(_known_concept)]] | None = None

    @model_validator(mode="after")
    def _text_on_reports(self) -> Selector:
        kinds = self.kind if isinstance(self.kind, list) else [self.kind]
        if self.text is not None and kinds != ["report"]:
            raise ValueError("'text' goes on a 'kind: report' selector (only reports have text)")
        return self

    @model_validator(mode="after")
    def _principal_on_diagnosis(self) -> Selector:
        if self.principal is None:
            return self
        kinds = self.kind if isinstance(self.kind, list) else [self.kind]
        if kinds != ["encounter"] or (self.diagnosis is None and self.not_diagnosis is None):
            raise ValueError(
                "'principal: true' goes on a 'kind: encounter' selector with 'diagnosis' or "
                "'not_diagnosis'"
            )
        return self


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


class LogicSpec(Strict):
    """What every logic type shares: an index pattern, a window from its anchor, and
    conditions. Each type in :mod:`plugin.rules.logic` subclasses it with a
    ``type: Literal[...]`` and its own keys; the rule model's ``logic`` is the
    discriminated union of the registered types (:func:`plugin.rules.logic.rule_model`)."""

    type: str
    index: Selector | list[Selector]
    within: Duration
    anchor: Literal["start", "end"] = "end"
    require: list[Condition] = Field(default_factory=list)
    exclude: list[Condition] = Field(default_factory=list)

    def index_selectors(self) -> list[Selector]:
        return self.index if isinstance(self.index, list) else [self.index]


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


# A catalogue id (etriggers.md: ``SP-1``, ``TR-3``, ``ED-1``) or a named pair without a
# number (``SPADE-SEPSIS``); upper case so that labels, the ranker and the dashboard join on
# the same string.
TRIGGER_PATTERN = r"^[A-Z]{2,6}-(?:\d+[A-Z]?|[A-Z]+)$"


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
    trigger: Annotated[str, Field(pattern=TRIGGER_PATTERN)] | None = None
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.[a-z0-9._-]+$")]] = Field(
        default_factory=list
    )
    falsepositives: Annotated[list[Str1], Field(min_length=1)]
    published: Published | None = None
    related: list[Related] = Field(default_factory=list)
    logic: LogicSpec  # narrowed to the registered types by plugin.rules.logic.rule_model()
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
    """Every key the shared rule-file models accept (for "did you mean" suggestions; the
    loader adds the keys of the registered logic types)."""
    keys: set[str] = set()
    for model in (
        Selector,
        Expect,
        AgeBounds,
        Condition,
        LogicSpec,
        Published,
        Related,
        RuleSpec,
        ValueSetSpec,
        TestCase,
        TestFile,
    ):
        keys.update(model.model_fields)
    return keys
