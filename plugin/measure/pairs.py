"""SPADE symptom–disease pairs as data: ``rules/spade/*.yml``, loaded with ``file:line`` errors.

A pair names a symptom cohort (treat-and-release visits with these diagnoses, minus
exclusions), a disease outcome (admissions with these diagnoses, principal or any), a
window, and a comparator that says where "expected" comes from: the same cohort's later
baseline (``temporal: [31, 365]``) or another symptom cohort (``cohort: {...}``).

Pair files end in ``.yml`` on purpose: the rule loader reads every ``*.yaml`` under the
catalogue root (``plugin.rules.loader.rule_files``), and a pair is not an e-trigger rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from plugin.errors import PairValidationError, RuleProblem, SourceLocation
from plugin.rules.codesets import CodeSet
from plugin.rules.loader import pydantic_problems
from plugin.rules.spans import load_yaml
from plugin.timeline.model import Code, Setting

PAIR_SUFFIX = ".yml"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{2,60}$")
_CODE = re.compile(r"^(icd10|icd9|snomed):[A-Za-z0-9.\-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortSpec(_Strict):
    """Which encounters belong to a cohort (index visits, or outcome admissions)."""

    name: str
    settings: list[Literal["ED", "AMB", "IP", "OBS"]]
    diagnosis: list[str] = Field(min_length=1)
    position: Literal["any", "principal"] = "any"
    released: bool | None = None  # index: treat-and-release only
    exclude: list[str] = []  # a visit with any of these codes is not an index visit
    min_age: int | None = None

    @field_validator("diagnosis", "exclude")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        for code in v:
            if not _CODE.match(code):
                raise ValueError(f"'{code}' is not system:code (icd10|icd9|snomed)")
        return v


class ComparatorSpec(_Strict):
    temporal: tuple[int, int] | None = None  # days after the index, e.g. (31, 365)
    cohort: CohortSpec | None = None  # a comparator symptom cohort (renal colic, back pain)

    @field_validator("temporal")
    @classmethod
    def _days(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 1 <= v[0] < v[1] <= 3650:
            raise ValueError("temporal must be [first_day, last_day] with 1 <= first < last")
        return v


class Benchmark(_Strict):
    """A published figure drawn on the charts. ``kind`` says which chart it belongs to."""

    kind: Literal["excess_per_10k", "observed_per_10k", "lookback_share", "ratio"]
    value: float
    label: str
    citation: str


class PairSpec(_Strict):
    title: str
    id: str
    status: Literal["stable", "test", "experimental"]
    description: str
    measure: str | None = None  # an endorsed measure this pair implements (CBE #3746)
    symptom: CohortSpec
    disease: CohortSpec
    window_days: int = Field(ge=1, le=365)
    comparator: ComparatorSpec
    published: list[Benchmark] = []
    references: list[str] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("id must be lower-case letters, digits, '-' or '_' (3-61 chars)")
        return v


@dataclass(frozen=True, slots=True)
class Cohort:
    """A compiled :class:`CohortSpec`."""

    name: str
    settings: frozenset[Setting]
    entries: tuple[str, ...]  # the diagnosis list as written ("icd10:R42"), first = typical
    codes: CodeSet
    principal: bool
    released: bool | None
    exclude: CodeSet
    min_age: int | None

    def has(self, codes: tuple[Code, ...]) -> bool:
        return any(c in self.codes for c in codes)

    def excluded(self, codes: tuple[Code, ...]) -> bool:
        return any(c in self.exclude for c in codes)


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    title: str
    status: str
    measure: str | None
    symptom: Cohort
    disease: Cohort
    window: int
    temporal: tuple[int, int] | None
    comparator: Cohort | None
    published: tuple[Benchmark, ...]
    references: tuple[str, ...]
    path: str

    @property
    def horizon(self) -> int:
        """Days of follow-up the measure reads after each index visit."""
        return max(self.window, self.temporal[1] if self.temporal else self.window)


def _codeset(entries: list[str]) -> CodeSet:
    out = CodeSet()
    for entry in entries:
        system, code = entry.split(":", 1)
        out.add(system, code)
    return out


def compile_cohort(spec: CohortSpec) -> Cohort:
    return Cohort(
        name=spec.name,
        settings=frozenset(Setting(s) for s in spec.settings),
        entries=tuple(spec.diagnosis),
        codes=_codeset(spec.diagnosis),
        principal=spec.position == "principal",
        released=spec.released,
        exclude=_codeset(spec.exclude),
        min_age=spec.min_age,
    )


def default_pairs_dir() -> Path:
    """``rules/spade`` of the shipped catalogue (installed copy or checkout)."""
    from plugin.rules.catalogue import default_rules_dir

    return default_rules_dir() / "spade"


def pair_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.glob(f"*{PAIR_SUFFIX}") if not p.name.startswith("."))


def load_pairs(path: str | Path | None = None) -> list[Pair]:
    """Every pair under ``path`` (default: the catalogue's ``rules/spade``).

    Raises :class:`PairValidationError` with every problem as ``file:line:col``.
    """
    root = Path(path) if path is not None else default_pairs_dir()
    if not root.exists():
        raise PairValidationError([RuleProblem(SourceLocation(str(root), 0, 0), "S000",
                                               "no such file or directory")])  # fmt: skip
    problems: list[RuleProblem] = []
    pairs: list[Pair] = []
    seen: dict[str, str] = {}
    files = pair_files(root)
    if not files:
        problems.append(RuleProblem(SourceLocation(str(root), 0, 0), "S001",
                                    f"no *{PAIR_SUFFIX} pair files"))  # fmt: skip
    for file in files:
        data, smap, probs = load_yaml(file)
        problems += probs
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(smap.problem((), "S005", "expected a mapping"))
            continue
        try:
            spec = PairSpec.model_validate(data)
        except ValidationError as exc:
            problems += pydantic_problems(exc, data, smap)
            continue
        if spec.id in seen:
            problems.append(smap.problem(("id",), "S105",
                                         f"duplicate pair id {spec.id} (also in {seen[spec.id]})"))
            continue
        seen[spec.id] = str(file)
        if spec.comparator.temporal is None and spec.comparator.cohort is None:
            problems.append(smap.problem(("comparator",), "S110",
                                         "comparator needs temporal: [first, last] or cohort:"))
        elif spec.comparator.temporal and spec.comparator.temporal[0] <= spec.window_days:
            problems.append(smap.problem(("comparator", "temporal"), "S111",
                                         "the temporal comparator must start after the window "
                                         f"({spec.window_days} d)"))
        if spec.symptom.released is not True:
            problems.append(smap.problem(("symptom",), "S112",
                                         "symptom index visits must be treat-and-release "
                                         "(released: true)", key=True))
        if file.stem != spec.id.replace("-", "_"):
            problems.append(smap.problem(("id",), "S104",
                                         f"file name must be the id: {spec.id.replace('-', '_')}"
                                         f"{PAIR_SUFFIX}"))
        pairs.append(_compile(spec, file))
    if problems:
        raise PairValidationError(problems)
    return pairs


def _compile(spec: PairSpec, file: Path) -> Pair:
    comp = spec.comparator
    return Pair(
        id=spec.id, title=spec.title, status=spec.status, measure=spec.measure,
        symptom=compile_cohort(spec.symptom), disease=compile_cohort(spec.disease),
        window=spec.window_days, temporal=comp.temporal,
        comparator=compile_cohort(comp.cohort) if comp.cohort else None,
        published=tuple(spec.published), references=tuple(spec.references), path=str(file),
    )  # fmt: skip
