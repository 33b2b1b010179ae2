"""Rule semantics: windows, each logic type, conditions, thresholds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from plugin.rules import evaluate_rule
from plugin.timeline.model import Setting

from .helpers import T0, cond, enc, obs, one_rule, proc, timeline

D = timedelta(days=1)
H = timedelta(hours=1)

SEQ = """  type: sequence
  index: {kind: encounter, setting: [ED], released: true, diagnosis: [icd10:R42]}
  outcome: {kind: encounter, setting: [IP], planned: false, diagnosis: [icd10:I60-I63]}
  within: 30d
"""


@pytest.fixture
def seq_rule(tmp_path):
    return one_rule(tmp_path, SEQ)


def dizzy_then_stroke(gap: timedelta, **kw):
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=True)
    ip = enc(2, timedelta(hours=4) + gap, Setting.IP, dx=("I639",), hours=72, **kw)
    return timeline(ed, ip)


@pytest.mark.parametrize(
    ("gap", "fires"),
    [
        (30 * D, True),  # exactly 30 days after discharge: inside (end inclusive)
        (30 * D + timedelta(minutes=1), False),  # day 31
        (29 * D, True),
        (timedelta(0), False),  # at the anchor itself: excluded
        (timedelta(minutes=1), True),
    ],
)
def test_sequence_window_edges(seq_rule, gap, fires):
    found = evaluate_rule(seq_rule, dizzy_then_stroke(gap), as_of=T0 + 400 * D)
    assert bool(found) is fires


def test_sequence_finding_fields(seq_rule):
    (f,) = evaluate_rule(seq_rule, dizzy_then_stroke(12 * D), as_of=T0 + 400 * D)
    assert f.index_ref == "Encounter/e1"
    assert f.outcome_ref == "Encounter/e2"
    assert f.evidence == ("Encounter/e1", "Encounter/e2")
    assert f.window_end == T0 + 4 * H + 30 * D
    assert "12.0 d" in f.summary
    again = evaluate_rule(seq_rule, dizzy_then_stroke(12 * D), as_of=T0 + 400 * D)
    assert again[0].key == f.key  # stable across runs


def test_sequence_outcome_filters(seq_rule):
    assert not evaluate_rule(seq_rule, dizzy_then_stroke(5 * D, planned=True))
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=False)
    ip = enc(2, 5 * D, Setting.IP, dx=("I639",))
    assert not evaluate_rule(seq_rule, timeline(ed, ip))
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=True)
    ip = enc(2, 5 * D, Setting.IP, dx=("Z8673",))  # history-of-stroke code: not a stroke
    assert not evaluate_rule(seq_rule, timeline(ed, ip))


def test_one_finding_per_index_event(seq_rule):
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=True)
    ed2 = enc(3, 2 * D, Setting.ED, dx=("R42",), released=True)
    ip = enc(2, 5 * D, Setting.IP, dx=("I63.9".replace(".", ""),))
    ip2 = enc(4, 6 * D, Setting.IP, dx=("I61",))
    found = evaluate_rule(seq_rule, timeline(ed, ed2, ip, ip2))
    assert [f.index_ref for f in found] == ["Encounter/e1", "Encounter/e3"]
    assert {f.outcome_ref for f in found} == {"Encounter/e2"}  # the first outcome


ABS = """  type: absence
  index: {kind: observation, codes: [loinc:29771-3], interpretation: [POS]}
  expect_any:
    - {kind: procedure, codes: ["cpt:45378-45392"]}
  within: 60d
  exclude:
    - age: {gt: 75}
    - event: {kind: condition, codes: [icd10:Z515]}
      between: [-365d, 60d]
    - died_within: 60d
"""


@pytest.fixture
def abs_rule(tmp_path):
    return one_rule(tmp_path, ABS)


def fit(*extra, **kw):
    return timeline(obs(1, timedelta(0), "29771-3", None, None, ("POS",)), *extra, **kw)


@pytest.mark.parametrize(
    ("day", "fires"),
    [(None, True), (59, False), (60, False), (61, True), (0, False), (-1, True)],
)
def test_absence_window_edges(abs_rule, day, fires):
    extra = () if day is None else (proc(1, day * D, "45380"),)
    found = evaluate_rule(abs_rule, fit(*extra), as_of=T0 + 400 * D)
    assert bool(found) is fires


def test_absence_waits_for_window_to_close(abs_rule):
    assert not evaluate_rule(abs_rule, fit(), as_of=T0 + 59 * D)
    assert evaluate_rule(abs_rule, fit(), as_of=T0 + 60 * D)


def test_absence_exclusions(abs_rule):
    from datetime import date

    as_of = T0 + 400 * D
    assert not evaluate_rule(abs_rule, fit(birth=date(1940, 1, 1)), as_of=as_of)  # age 85
    assert evaluate_rule(abs_rule, fit(birth=None), as_of=as_of)  # unknown age: a human looks
    assert not evaluate_rule(
        abs_rule, fit(cond(1, -100 * D, "Z51.5".replace(".", ""))), as_of=as_of
    )
    assert evaluate_rule(abs_rule, fit(cond(1, -400 * D, "Z515")), as_of=as_of)  # too long ago
    assert not evaluate_rule(abs_rule, fit(deceased=T0 + 30 * D), as_of=as_of)
    assert evaluate_rule(abs_rule, fit(deceased=T0 + 90 * D), as_of=as_of)


def test_threshold_with_unit_conversion(tmp_path):
    rule = one_rule(
        tmp_path,
        """  type: absence
  index: {kind: observation, codes: [loinc:718-7], value: "<= 11 g/dL"}
  expect_any: [{kind: procedure, codes: [cpt:45378]}]
  within: 60d
""",
    )
    as_of = T0 + 400 * D
    assert evaluate_rule(rule, timeline(obs(1, timedelta(0), "718-7", 10.5, "g/dL")), as_of=as_of)
    assert evaluate_rule(rule, timeline(obs(1, timedelta(0), "718-7", 105, "g/L")), as_of=as_of)
    assert not evaluate_rule(rule, timeline(obs(1, timedelta(0), "718-7", 125, "g/L")), as_of=as_of)
    assert not evaluate_rule(
        rule, timeline(obs(1, timedelta(0), "718-7", 10, "mmol/L")), as_of=as_of
    )
    assert evaluate_rule(rule, timeline(obs(1, timedelta(0), "718-7", 11, "g/dL")), as_of=as_of)


def test_expect_with_own_window_and_require(tmp_path):
    rule = one_rule(
        tmp_path,
        """  type: absence
  index: {kind: observation, codes: [loinc:3016-3], value: "> 10 mIU/L"}
  expect_any:
    - {kind: observation, codes: [loinc:3016-3], within: 60d}
    - {kind: procedure, codes: [cpt:99213], within: 30d}
  within: 60d
  require:
    - event: {kind: condition, codes: [icd10:E03]}
      between: [-3650d, 0d]
""",
    )
    as_of = T0 + 400 * D
    hypo = cond(1, -200 * D, "E039")
    tsh = obs(1, timedelta(0), "3016-3", 14.0, "uIU/mL")
    assert evaluate_rule(rule, timeline(tsh, hypo), as_of=as_of)
    assert not evaluate_rule(rule, timeline(tsh), as_of=as_of)  # requirement not met
    assert not evaluate_rule(rule, timeline(tsh, hypo, proc(1, 20 * D, "99213")), as_of=as_of)
    assert evaluate_rule(rule, timeline(tsh, hypo, proc(1, 45 * D, "99213")), as_of=as_of)
    repeat = obs(2, 45 * D, "3016-3", 4.0, "uIU/mL")
    assert not evaluate_rule(rule, timeline(tsh, hypo, repeat), as_of=as_of)
    (f,) = evaluate_rule(rule, timeline(tsh, hypo), as_of=as_of)
    assert f.evidence == ("Observation/o1", "Condition/c1")


def test_icu_transfer_from_location_history(tmp_path):
    rule = one_rule(
        tmp_path,
        """  type: sequence
  index: {kind: encounter, setting: [IP]}
  outcome: {kind: transfer, codes: [location:icu]}
  anchor: start
  within: 24h
""",
    )
    from plugin.timeline.model import Event, Kind

    ip = enc(1, timedelta(0), Setting.IP, hours=100)
    icu = Event(
        patient="p1",
        t=T0 + 20 * H,
        kind=Kind.TRANSFER,
        system="location",
        code="icu",
        source="Encounter/e1",
    )
    late = Event(
        patient="p1",
        t=T0 + 30 * H,
        kind=Kind.TRANSFER,
        system="location",
        code="icu",
        source="Encounter/e1",
    )
    assert evaluate_rule(rule, timeline(ip, icu))
    assert not evaluate_rule(rule, timeline(ip, late))


def test_window_property(tmp_path):
    """For any gap, a 30 d sequence fires iff 0 < gap <= 30 d (hypothesis over minutes)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    rule = one_rule(tmp_path, SEQ)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(min_value=-5 * 24 * 60, max_value=40 * 24 * 60))
    def check(minutes):
        gap = timedelta(minutes=minutes)
        found = evaluate_rule(rule, dizzy_then_stroke(gap), as_of=T0 + 400 * D)
        assert bool(found) is (timedelta(0) < gap <= 30 * D)

    check()


def test_any_of_conditions(tmp_path):
    rule = one_rule(
        tmp_path,
        """  type: sequence
  index: {kind: encounter, setting: [ED], released: true}
  outcome: {kind: encounter, setting: [IP]}
  within: 10d
  require:
    - any:
        - event: {kind: observation, codes: [loinc:8310-5], value: ">= 38.0 Cel"}
          between: [-24h, 0h]
        - event: {kind: observation, codes: [loinc:8310-5], value: "< 36.0 Cel"}
          between: [-24h, 0h]
""",
    )
    ed = enc(1, timedelta(0), Setting.ED, released=True)
    ip = enc(2, 3 * D, Setting.IP)
    for temp, fires in ((38.5, True), (35.2, True), (37.0, False), (99.5, False)):
        unit = "[degF]" if temp > 50 else "Cel"
        tl = timeline(ed, ip, obs(1, 2 * H, "8310-5", temp, unit))
        assert bool(evaluate_rule(rule, tl)) is fires, temp
    tl = timeline(ed, ip, obs(1, 2 * H, "8310-5", 101.5, "[degF]"))  # 38.6 C
    (f,) = evaluate_rule(rule, tl)
    assert "Observation/o1" in f.evidence


def test_conditions_relative_to_the_outcome(tmp_path):
    from plugin.timeline.model import Event, Kind

    rule = one_rule(
        tmp_path,
        """  type: sequence
  index: {kind: encounter, setting: [IP]}
  outcome: {kind: transfer, codes: [location:icu]}
  anchor: start
  within: 24h
  require:
    - event: {kind: transfer, codes: [location:ward]}
      between: [0h, 24h]
      same_encounter: true
      before_outcome: true
  exclude:
    - event: {kind: condition, codes: [icd10:Z66]}
      between: [-1h, 1h]
      relative_to: outcome
""",
    )

    def transfer(at, code, source="Encounter/e1"):
        return Event(
            patient="p1",
            t=T0 + at,
            kind=Kind.TRANSFER,
            system="location",
            code=code,
            source=source,
            encounter=source,
        )

    ip = enc(1, timedelta(0), Setting.IP, hours=100)
    ward, icu = transfer(1 * H, "ward"), transfer(5 * H, "icu")
    assert evaluate_rule(rule, timeline(ip, ward, icu))
    assert not evaluate_rule(rule, timeline(ip, icu, transfer(8 * H, "ward")))  # ward after ICU
    other_stay = transfer(1 * H, "ward", source="Encounter/e9")
    assert not evaluate_rule(rule, timeline(ip, other_stay, icu))  # not this admission
    dnr = cond(1, 5 * H + 30 * timedelta(minutes=1), "Z66")
    assert not evaluate_rule(rule, timeline(ip, ward, icu, dnr))
    # a later ICU transfer that does satisfy the conditions is the outcome
    early_icu = transfer(30 * timedelta(minutes=1), "icu")
    (f,) = evaluate_rule(rule, timeline(ip, early_icu, ward, icu))
    assert f.evidence[-1] == "Encounter/e1" and f.summary.endswith("after 0.2 d")


def test_outcome_conditions_are_invalid_in_absence_rules(tmp_path):
    from plugin.errors import RuleValidationError

    with pytest.raises(RuleValidationError, match="absence rule has no outcome"):
        one_rule(
            tmp_path,
            """  type: absence
  index: {kind: observation, codes: [loinc:29771-3]}
  expect_any: [{kind: procedure, codes: [cpt:45378]}]
  within: 60d
  exclude:
    - event: {kind: condition, codes: [icd10:Z515]}
      between: [-1d, 1d]
      relative_to: outcome
""",
        )


def test_index_matches_for_real_time_advice(seq_rule):
    from plugin.rules import index_matches

    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=True)
    other = enc(3, timedelta(0), Setting.ED, dx=("J069",), released=True)
    tl = timeline(ed, other)
    assert index_matches(seq_rule, tl, ed) == ["Encounter/e1"]  # no outcome needed yet
    assert index_matches(seq_rule, tl, other) is None
