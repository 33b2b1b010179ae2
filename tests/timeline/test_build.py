"""plugin.timeline.build: ordering, condition linking and the `released` derivation, on plain
events (as rule tests build them) through timeline_from_spec."""

from datetime import UTC, date, datetime, timedelta

import pytest

from plugin.errors import TimelineSpecError
from plugin.timeline.build import build_timeline
from plugin.timeline.model import Code, EncounterDetail, Event, Kind, PatientInfo, Setting
from plugin.timeline.spec import timeline_from_spec

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def encounters(tl):
    return {e.source: e for e in tl.events if e.kind is Kind.ENCOUNTER}


def ed_then(admission, ed=None):
    ed = ed or {}
    return timeline_from_spec(
        {
            "events": [
                {"id": "ed", "t": "0d", "setting": "ED", "end": "4h", "disposition": "home", **ed},
                {"id": "adm", **admission},
            ]
        }
    )


@pytest.mark.parametrize(
    ("start", "released"),
    [
        ("2h", False),  # admission during the ED visit
        ("27h", False),  # 23 h after the 4 h visit ended
        ("28h", False),  # exactly 24 h after the end: inclusive
        ("28.1h", True),  # just over 24 h later
        ("3d", True),
    ],
)
def test_released_depends_on_an_admission_within_24h_of_the_end(start, released):
    tl = ed_then({"t": start, "setting": "IP", "end": "2d"})
    assert encounters(tl)["Encounter/ed"].detail.released is released
    assert encounters(tl)["Encounter/adm"].detail.released is False  # only ED/AMB can be


@pytest.mark.parametrize("setting", ["IP", "OBS", "ICU"])
def test_any_admission_setting_counts(setting):
    tl = ed_then({"t": "10h", "setting": setting, "end": "1d"})
    assert encounters(tl)["Encounter/ed"].detail.released is False


def test_an_ed_visit_during_an_ongoing_stay_is_not_released():
    tl = ed_then({"t": "-2d", "setting": "IP", "end": "5d"})
    assert encounters(tl)["Encounter/ed"].detail.released is False


@pytest.mark.parametrize("disposition", ["admitted", "expired", "transfer"])
def test_dispositions_that_are_not_a_release(disposition):
    tl = ed_then({"t": "20d", "setting": "IP"}, ed={"disposition": disposition})
    assert encounters(tl)["Encounter/ed"].detail.released is False


def test_parent_of_an_admission_is_not_released():
    tl = ed_then({"t": "40d", "setting": "IP", "part_of": "ed"})  # odd dates, explicit link
    assert encounters(tl)["Encounter/ed"].detail.released is False


def test_released_works_on_plain_events_and_overrides_the_caller():
    ed = Event(
        patient="p",
        t=T0,
        end=T0 + timedelta(hours=3),
        kind=Kind.ENCOUNTER,
        system="setting",
        code="AMB",
        source="Encounter/a",
        detail=EncounterDetail(setting=Setting.AMB, class_code="AMB", released=False),
    )
    ip = Event(
        patient="p",
        t=T0 + timedelta(days=2),  # 45 h after the visit ended
        kind=Kind.ENCOUNTER,
        system="setting",
        code="IP",
        source="Encounter/b",
        detail=EncounterDetail(setting=Setting.IP, class_code="IMP", released=True),
    )
    tl = build_timeline(PatientInfo(id="p"), [ip, ed])
    assert [e.source for e in tl.events] == ["Encounter/a", "Encounter/b"]
    assert [e.detail.released for e in tl.events] == [True, False]


def test_conditions_are_linked_to_their_encounter():
    tl = timeline_from_spec(
        {
            "events": [
                {"id": "v", "t": "0d", "setting": "ED", "end": "3h", "diagnosis": ["icd10:R51"]},
                {
                    "t": "1h",
                    "kind": "condition",
                    "code": "icd10:R42",
                    "codes": ["snomed:404640003"],
                    "encounter": "v",
                },
                {"t": "1h", "kind": "condition", "code": "icd10:R51"},
            ]
        }
    )
    (visit,) = encounters(tl).values()
    assert visit.detail.diagnoses == (
        Code("icd10", "R51"),
        Code("icd10", "R42"),
        Code("snomed", "404640003"),
    )


def test_events_sorted_by_time_kind_source():
    tl = timeline_from_spec(
        {
            "events": [
                {"id": "b", "t": "1d", "kind": "procedure", "code": "cpt:45378"},
                {"id": "a", "t": "1d", "kind": "procedure", "code": "cpt:45378"},
                {"t": "1d", "kind": "condition", "code": "icd10:K92.1"},
                {"t": "0d", "kind": "observation", "code": "loinc:29771-3"},
            ]
        }
    )
    assert [e.source for e in tl.events] == [
        "Observation/e3",
        "Condition/e2",
        "Procedure/a",
        "Procedure/b",
    ]


# --- the inline format --------------------------------------------------------------------------
def test_spec_offsets_values_and_patient():
    tl = timeline_from_spec(
        {
            "patient": {
                "id": "p9",
                "birth_date": date(1950, 4, 1),
                "sex": "female",
                "deceased": "40d",
            },
            "events": [
                {
                    "t": "-30d",
                    "kind": "observation",
                    "code": "loinc:29771-3",
                    "interpretation": ["pos"],
                },
                {"t": "36h", "kind": "observation", "code": "loinc:718-7", "value": "10.5 g/dL"},
                {"t": "2025-03-05T10:00:00+04:00", "kind": "procedure", "code": "cpt:45378"},
                {"t": "2025-03-06", "kind": "procedure", "code": "cpt:45380"},
            ],
        }
    )
    assert tl.patient.birth_date == date(1950, 4, 1)
    assert tl.patient.deceased == T0 + timedelta(days=40)
    fit, hb, death, colo, colo2 = tl.events
    assert fit.t == T0 - timedelta(days=30) and fit.interpretation == ("POS",)
    assert (hb.t, hb.value, hb.unit) == (T0 + timedelta(hours=36), 10.5, "g/dL")
    assert colo.t == datetime(2025, 3, 5, 6, 0, tzinfo=UTC) and not colo.date_only
    assert colo2.t == datetime(2025, 3, 6, tzinfo=UTC) and colo2.date_only
    assert (death.kind, death.source) == (Kind.DEATH, "Patient/p9")
    assert {e.patient for e in tl.events} == {"p9"}


def test_spec_encounter_fields():
    tl = timeline_from_spec(
        {
            "events": [
                {
                    "id": "h",
                    "t": "0d",
                    "end": "3d",
                    "setting": "IP",
                    "admit_source": "emd",
                    "icu": True,
                    "planned": True,
                    "diagnosis": ["icd10:I63.9"],
                    "codes": ["snomed:183807002"],
                }
            ]
        }
    )
    (e,) = tl.events
    assert (e.system, e.code, e.alt) == ("setting", "IP", (Code("snomed", "183807002"),))
    assert e.end == T0 + timedelta(days=3)
    d = e.detail
    assert (d.admit_source, d.planned, d.diagnoses) == ("emd", True, (Code("icd10", "I639"),))
    assert d.locations[0].icu


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"t": "0d", "setting": "ED", "released": True}, "released"),
        ({"t": "0d", "kind": "condition", "cod": "icd10:R42"}, "unknown key"),
        ({"t": "soon", "kind": "condition"}, "offset"),
        ({"t": "0d", "kind": "condition", "encounter": "nope"}, "no event with id"),
        ({"t": "0d", "kind": "sandwich"}, "sandwich"),
        ({"t": "0d", "kind": "condition", "code": "R42"}, "system:code"),
    ],
)
def test_spec_errors_name_the_event(event, message):
    with pytest.raises(TimelineSpecError, match=r"events\[1\]") as err:
        timeline_from_spec({"events": [{"t": "0d", "kind": "condition"}, event]})
    assert message in str(err.value)
