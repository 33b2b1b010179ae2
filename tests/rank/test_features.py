"""Feature pipeline: values, and the leakage tests (nothing after the encounter end, nothing
outside the rule window, no label field reaches a feature)."""

from __future__ import annotations

import copy
import math
import random

import pytest

from plugin.rank import features as F
from plugin.rank.dataset import collect
from plugin.rank.labels import LabelRow
from plugin.timeline.codes import parse_code
from plugin.timeline.spec import timeline_from_spec
from tests.rank.conftest import abdominal_spec, dizziness_spec

# everything that can happen after an ED visit that ended at 4 h (the dizziness case)
FUTURE_EVENTS = [
    {"t": "5h", "setting": "IP", "end": "2d", "id": "adm_early", "diagnosis": ["icd10:I63.9"]},
    {
        "t": "6h",
        "kind": "observation",
        "code": "loinc:8310-5",
        "value": 39.5,
        "unit": "Cel",
        "encounter": "ed",
    },  # a late result filed against the ED visit
    {"t": "7h", "code": "icd10:I48.91", "encounter": "ed"},  # a late diagnosis linked to it
    {"t": "8h", "kind": "procedure", "code": "cpt:70450", "encounter": "ed"},
    {"t": "3d", "kind": "medication", "code": "rxnorm:10582"},
    {"t": "10d", "setting": "ED", "end": "3h", "diagnosis": ["icd10:R42"]},
    {"t": "40d", "code": "icd10:C34.90"},
]


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


def test_feature_lists_are_versioned_and_consistent() -> None:
    assert F.FEATURE_VERSION
    assert len(set(F.REVIEW_FEATURES)) == len(F.REVIEW_FEATURES)
    assert F.REVIEW_FEATURES[: len(F.REALTIME_FEATURES)] == F.REALTIME_FEATURES
    assert F.CATEGORICAL <= set(F.REVIEW_FEATURES)
    for label_field in ("is_mod", "missed_dx", "scenario", "label", "patient_id", "index_ref"):
        assert not any(label_field in name for name in F.REVIEW_FEATURES)


def test_realtime_features_read_the_visit() -> None:
    spec, _ = dizziness_spec("p1", random.Random(3))
    tl = timeline_from_spec(spec)
    row = F.realtime_features(tl, "Encounter/ed")
    assert row.keys() == set(F.REALTIME_FEATURES)
    ct = any(e.get("code") == "cpt:70450" for e in spec["events"])
    assert row["head_imaging"] == (1.0 if ct else 0.0)
    assert row["sym_dizziness"] + row["sym_headache"] == 1.0
    assert row["temp_max"] == pytest.approx(36.8)
    assert row["setting"] == F.SETTINGS.index("ED")
    assert row["disposition"] == F.DISPOSITIONS.index("home")
    assert row["prior_amb_365"] == 0.0  # the clinic visit was 400 days before
    enc = F.find_event(tl, "Encounter/ed")
    assert enc is not None
    assert row["age"] == tl.patient.age_at(enc.t)


@pytest.mark.parametrize("seed", range(6))
def test_realtime_features_ignore_everything_after_the_encounter(seed: int) -> None:
    rng = random.Random(seed)
    spec, _ = dizziness_spec(f"p{seed}", rng)
    base = F.realtime_features(timeline_from_spec(spec), "Encounter/ed")
    more = copy.deepcopy(spec)
    more["events"] += FUTURE_EVENTS
    more["patient"]["deceased"] = "20d"
    assert _same(base, F.realtime_features(timeline_from_spec(more), "Encounter/ed"))
    changed = copy.deepcopy(spec)  # change what follows: the admission, its codes, its time
    for e in changed["events"]:
        if e.get("id") == "adm":
            e.update(t="6h", diagnosis=["icd10:A41.9"], setting="ICU", end="9d")
    assert _same(base, F.realtime_features(timeline_from_spec(changed), "Encounter/ed"))


def test_timeline_until_itself_drops_a_late_diagnosis_linked_to_the_visit() -> None:
    """The builder merges a later Condition naming the ED visit into the visit's diagnoses;
    ``Timeline.until`` takes it back, so even features computed from ``until`` directly (not
    through :func:`realtime_features`) do not see it."""
    spec, _ = dizziness_spec("p9", random.Random(9))
    base = F.realtime_features(timeline_from_spec(spec), "Encounter/ed")
    spec["events"].append({"t": "7h", "code": "icd10:I48.91", "encounter": "ed"})
    tl = timeline_from_spec(spec)
    enc = F.find_event(tl, "Encounter/ed")
    assert enc is not None and parse_code("icd10:I48.91") in enc.diagnoses
    known = tl.until(enc.stop)
    known_enc = F.find_event(known, "Encounter/ed")
    assert known_enc is not None
    assert _same(base, F.encounter_features(known, known_enc))
    assert _same(base, F.realtime_features(tl, "Encounter/ed"))


def test_review_features_stay_inside_the_rule_window(evaluator) -> None:  # type: ignore[no-untyped-def]
    spec, _, _ = abdominal_spec("p-abd", random.Random(5))
    tl = timeline_from_spec(spec)
    (finding,) = [f for f in evaluator(tl) if f.extra.get("trigger") == "SP-3"]
    base = F.finding_features(tl, finding)
    later = copy.deepcopy(spec)
    later["events"] += [
        {"t": "11d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:K35.80"]},
        {"t": "12d", "code": "icd10:Z51.5"},
        {"t": "15d", "kind": "procedure", "code": "cpt:44970"},
    ]
    later["patient"]["deceased"] = "60d"
    tl2 = timeline_from_spec(later)
    (finding2,) = [f for f in evaluator(tl2) if f.extra.get("trigger") == "SP-3"]
    assert finding2.window_end == finding.window_end
    assert _same(base, F.finding_features(tl2, finding2))
    # inside the window it does change: a hospice code on day 8
    inside = copy.deepcopy(spec)
    inside["events"].append({"t": "8d", "code": "icd10:Z51.5"})
    tl3 = timeline_from_spec(inside)
    (finding3,) = [f for f in evaluator(tl3) if f.extra.get("trigger") == "SP-3"]
    assert F.finding_features(tl3, finding3)["win_terminal"] == 1.0


def test_labels_never_reach_the_features(train_pop, evaluator) -> None:  # type: ignore[no-untyped-def]
    tls = train_pop.timelines[:80]
    flipped = {
        k: [
            LabelRow(
                patient_id=r.patient_id,
                index_ref=r.index_ref,
                trigger=r.trigger,
                scenario="x",
                is_mod=not r.is_mod,
                missed_dx="meningitis",
            )
            for r in rows
        ]
        for k, rows in train_pop.labels.items()
    }
    a = collect(tls, evaluator, train_pop.labels, realtime=False)
    b = collect(tls, evaluator, flipped, realtime=False)
    assert a.review.y != b.review.y
    assert a.review.matrix().tobytes() == b.review.matrix().tobytes()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([{"t": "10d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:I63.9"]}], "stroke"),
        ([{"t": "40d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:I63.9"]}], "none"),
        (
            [
                {"t": "-700d", "code": "icd10:I63.9"},  # an old stroke; a new one is still new
                {"t": "5d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:I63.9"]},
            ],
            "stroke",
        ),
        (
            [
                {"t": "2h", "code": "icd10:I63.9", "encounter": "ed"},  # diagnosed at the visit
                {"t": "5d", "setting": "IP", "end": "2d", "diagnosis": ["icd10:I63.9"]},
            ],
            "none",
        ),
        (
            [
                {"t": "-300d", "code": "icd10:C18.9"},  # a known cancer is not missed
                {"t": "5d", "code": "icd10:C18.9"},
            ],
            "none",
        ),
        (
            [
                {"t": "20d", "code": "icd10:A41.9"},
                {"t": "8d", "setting": "IP", "end": "1d", "diagnosis": ["icd10:I21.4"]},
            ],
            "mi",
        ),
    ],
)
def test_realtime_label(extra: list[dict], expected: str) -> None:
    from plugin.rank.labels import realtime_label

    spec = {
        "patient": {"id": "lab"},
        "events": [
            {"t": "0d", "setting": "ED", "end": "4h", "id": "ed", "diagnosis": ["icd10:R42"]},
            *extra,
        ],
    }
    tl = timeline_from_spec(spec)
    enc = F.find_event(tl, "Encounter/ed")
    assert enc is not None
    assert realtime_label(tl, enc) == expected
