"""The review instrument: Revised Safer Dx items (paraphrased), the AHRQ harm scale, and the
review workflow (who reviews next, when a case closes, what its final judgement is).

The item texts below are **paraphrases** of the Revised Safer Dx Instrument (Singh et al.,
Diagnosis 2019;6:315) made from secondary descriptions; the verbatim wording is in the AHRQ
Measure Dx appendix and should replace these before results are compared across sites,
because the instrument's reliability is tied to its wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCALE = range(1, 8)  # 1 strongly disagree ... 7 strongly agree
MOD_THRESHOLD = 5  # item 13 >= 5 means a missed opportunity in diagnosis

ITEMS: tuple[str, ...] = (
    "The history taken at the index visit pointed to a diagnosis that was not considered.",
    "The physical examination pointed to a diagnosis that was not considered.",
    "Test results available at the time pointed to a diagnosis that was not considered.",
    "Information from the patient was inaccurate or incomplete.",
    "The data available should have prompted further evaluation (tests or consultations).",
    "Red flags were present and were not acted on.",
    "Needed diagnostic tests were not ordered, or were ordered or performed inappropriately.",
    "Test results were misinterpreted.",
    "Follow-up or tracking of test results was inadequate.",
    "Follow-up visits or return precautions were not arranged or not timely.",
    "A referral or consultation was missing, delayed, or its advice not acted on.",
    "The presentation was atypical or the diagnosis was still evolving (mitigating).",
    "Summary judgement: this episode of care had a missed opportunity to make a correct or "
    "timely diagnosis.",
)
SCALE_LABELS = {1: "strongly disagree", 4: "neutral", 7: "strongly agree"}

# AHRQ Common Formats Harm Scale v1.2 (wording as reproduced by the Oregon PSC dictionary)
HARM: tuple[tuple[str, str], ...] = (
    ("death", "Death"),
    ("severe", "Severe harm: injury that interferes significantly with function or quality of "
               "life"),
    ("moderate", "Moderate harm: adversely affects function or quality of life, below severe"),
    ("mild", "Mild harm: minimal symptoms or loss of function, or only additional treatment, "
             "monitoring or a longer stay"),
    ("none", "No harm"),
    ("unknown", "Unknown"),
)  # fmt: skip
HARM_CODES = tuple(code for code, _ in HARM)
DURATIONS = ("permanent", "temporary", "unknown")

# Safer Dx Process Breakdown dimensions (Singh et al.): where the diagnostic process broke
# down, as optional contributing factors of a missed opportunity
PROCESS_BREAKDOWN: tuple[tuple[str, str], ...] = (
    ("encounter", "Patient-provider encounter (history, examination, ordering tests)"),
    ("tests", "Diagnostic tests (performance and interpretation)"),
    ("follow_up", "Follow-up and tracking of diagnostic information"),
    ("referrals", "Referrals (subspecialty consultation)"),
    ("patient", "Patient-related factors"),
)
FACTOR_CODES = tuple(code for code, _ in PROCESS_BREAKDOWN)

STATUSES = ("new", "in_review", "second_review", "third_review", "closed")
STATUS_LABELS = {
    "new": "new",
    "in_review": "in review",
    "second_review": "second review",
    "third_review": "third review",
    "closed": "closed",
}

# What a reviewer (not an admin) is shown: a second or third review looks like any other
# review in progress, because only some first judgements lead to one and the status would
# tell the next reviewer what the first one decided (blind review).
BLIND_STATUS = {"new": "new", "in_review": "in_review", "second_review": "in_review",
                "third_review": "in_review", "closed": "closed"}  # fmt: skip

Score = Annotated[int, Field(ge=1, le=7)]


def shown_status(status: str, is_admin: bool) -> str:
    return status if is_admin else BLIND_STATUS.get(status, status)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here with a message instead of a 500 there
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


class ReviewInput(BaseModel):
    """One submitted review form (validated at the web/CLI boundary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Score] = Field(min_length=len(ITEMS), max_length=len(ITEMS))
    harm: str = Field(pattern="^(" + "|".join(HARM_CODES) + ")$")
    harm_duration: str | None = Field(default=None, pattern="^(" + "|".join(DURATIONS) + ")$")
    miscoded: bool = False
    missed_dx: str = Field(default="", max_length=500)
    notes: str = Field(default="", max_length=20_000)
    factors: list[str] = Field(default_factory=list, max_length=len(PROCESS_BREAKDOWN))

    @field_validator("factors")
    @classmethod
    def _factors(cls, value: list[str]) -> list[str]:
        unknown = set(value) - set(FACTOR_CODES)
        if unknown:
            raise ValueError(f"unknown process breakdown factor(s): {sorted(unknown)}")
        return sorted(set(value), key=FACTOR_CODES.index)

    @field_validator("missed_dx", "notes")
    @classmethod
    def _text(cls, value: str) -> str:
        return _no_nul(value)

    @property
    def judgement(self) -> int:
        return self.items[-1]

    @property
    def is_mod(self) -> bool:
        return self.judgement >= MOD_THRESHOLD


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjudication:
    """How a case's reviews become its verdict (shown on every case page).

    * The verdict is the **majority** of all its reviews' item-13 judgements (MOD or not),
      so a later reviewer cannot overturn two who agreed.
    * A first review judged MOD goes to a second reviewer; a first review judged not MOD
      closes the case (an admin can send it for another review).
    * While the reviews are tied, the case goes to a tie-break review: by any other
      reviewer (``rule="majority"``), or by the named adjudicator (``rule="adjudicator"``),
      whose review then decides.
    """

    rule: str = "majority"  # majority | adjudicator
    adjudicator: str | None = None  # user name, with rule == "adjudicator"

    def describe(self) -> str:
        tie = (f"the adjudicator ({self.adjudicator}) breaks a tie"
               if self.rule == "adjudicator" and self.adjudicator
               else "another reviewer breaks a tie")  # fmt: skip
        return ("the verdict is the majority of all independent reviews (item 13 ≥ 5 = "
                "missed opportunity); a judgement of a missed opportunity is always checked "
                f"by another reviewer, and {tie}.")  # fmt: skip


def review_round(status: str) -> int | None:
    """The round a review saved now belongs to; None when the case takes no review."""
    return {"new": 1, "in_review": 1, "second_review": 2, "third_review": 3}.get(status)


def after_review(round_: int, is_mod: bool, earlier: Sequence[bool]) -> str:
    """Status after a review: a lone first review judged MOD -> second review; reviews
    tied -> third review (tie-break); otherwise the case closes."""
    votes = [*earlier, is_mod]
    if len(votes) == 1:
        return "second_review" if is_mod else "closed"
    mods = sum(votes)
    if 2 * mods == len(votes):
        return "third_review"
    return "closed"


def final_judgement(judgements: Sequence[bool], status: str) -> bool | None:
    """A closed case's verdict: the majority of its reviews (see :class:`Adjudication`);
    a tie, which the workflow never closes, falls back to the last review."""
    if status != "closed" or not judgements:
        return None
    mods = sum(judgements)
    if 2 * mods == len(judgements):
        return judgements[-1]
    return 2 * mods > len(judgements)
