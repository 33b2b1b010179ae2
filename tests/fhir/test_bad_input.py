"""Bad input never crashes and never silently loses (issue 11, item 6).

The damaged-input corpus is ``fhir_fixtures/bad/<case>/``: each case is a clean scenario of
``fhir_fixtures/`` with one kind of damage (and its patient renamed), described in
``fhir_fixtures/bad/expected/cases.json``. A case passes when ``dxsafety scan`` of it exits 0,
prints the expected warnings and finds exactly what the scan of the clean scenario finds. Damage
that cannot live in a committed file (symbolic links, unreadable paths, non-UTF-8 names, empty
sources) is built in ``tmp_path`` here.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import EmptySource, ExitCode, FatalError, OutOfRangeDate
from plugin.fhir import values
from plugin.fhir.read import ReadReport, iter_resources, list_input_files
from plugin.fhir.stage import iter_patients, iter_timelines

REPO = Path(__file__).parents[2]
FIXTURES = REPO / "fhir_fixtures"
BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "expected" / "cases.json").read_text())
AS_OF = "2026-06-01"


def scan(path: Path | str, out: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    code = main(["scan", str(path), "--as-of", AS_OF, "--out", str(out), *args])
    return code, json.loads(out.read_text())


def keys(findings: list[dict[str, str]], patients: dict[str, str] | None = None) -> set[tuple]:
    back = {new: old for old, new in (patients or {}).items()}
    return {
        (back.get(f["patient_id"], f["patient_id"]), f["rule_id"], f["index_ref"]) for f in findings
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_case_finds_what_the_clean_scenario_finds(case, tmp_path, capsys):
    spec = CASES[case]
    code, clean = scan(FIXTURES / spec["clean"], tmp_path / "clean.json")
    assert code == 0 and clean, "every corpus case damages a scenario that has findings"
    capsys.readouterr()
    code, damaged = scan(BAD / case, tmp_path / "damaged.json", *spec.get("args", []))
    err = capsys.readouterr().err
    assert code == 0
    assert keys(damaged, spec["patients"]) == keys(clean)
    assert "0 skipped" in err  # read, not dropped
    for message in spec["messages"]:
        assert message in err


def test_corpus_cases_damage_their_scenario():
    """Each case differs from its clean scenario by more than the patient's name."""
    for case, spec in CASES.items():
        clean = {p.name: p.read_bytes() for p in (FIXTURES / spec["clean"]).glob("*.*json")}
        bad = {p.name: p.read_bytes() for p in (BAD / case).glob("*.*json")}
        for old, new in spec["patients"].items():
            bad = {k: v.replace(new.encode(), old.encode()) for k, v in bad.items()}
        assert bad != clean, case


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T23:00:00Z",
        "0001-01-01",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:30:00+14:00",
        "9999",
        "2999-12",
    ],
)
def test_placeholder_dates_read_as_unknown_with_a_warning(value):
    with pytest.raises(OutOfRangeDate):
        values.parse_datetime(value)
    with values.collecting() as notes:
        assert values.when({"end": value}, "end") is None
    assert [n.reason for n in notes] == ["placeholder date"]


def test_dates_of_shifted_real_data_are_not_placeholders():
    # MIMIC-IV shifts its dates into 2100-2210
    assert values.parse_datetime("2201-03-04T10:00:00-04:00")[0].year == 2201


def test_placeholder_end_does_not_crash_the_rules(tmp_path):
    """The 9999-12-31 "no end" of an index ED visit used to overflow window arithmetic in the
    timeline and the engine: now the visit is open-ended and the scan goes on."""
    src = BAD / "placeholder_dates"
    data = tmp_path / "src"
    shutil.copytree(src, data)
    enc = data / "Encounter.ndjson"
    rows = [json.loads(line) for line in enc.read_text().splitlines()]
    for row in rows:
        row["period"]["end"] = "9999-12-31T23:59:59+14:00"
    enc.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _ = scan(data, tmp_path / "f.json")
    assert code == 0  # findings may differ: every encounter is now open-ended


def test_end_before_start_keeps_the_event_without_a_duration():
    with values.collecting() as notes:
        start, end = values.period(
            {"period": {"start": "2025-02-10T22:00:00-05:00", "end": "2025-02-10T20:00:00-05:00"}},
            "period",
        )
    assert start == (datetime(2025, 2, 11, 3, 0, tzinfo=UTC), False) and end is None
    assert [n.reason for n in notes] == ["end before start"]
    # a date-only end on the day of a timed start is not "before" it
    with values.collecting() as notes:
        _, end = values.period({"p": {"start": "2025-02-10T22:00:00Z", "end": "2025-02-10"}}, "p")
    assert end is not None and not notes


def test_end_before_start_reported_by_file_and_line():
    report = ReadReport()
    (timeline,) = iter_timelines(BAD / "end_before_start", report=report)
    ed = next(e for e in timeline.events if e.source == "Encounter/sp1-p1-ed" and e.detail)
    assert ed.end is None and ed.stop == ed.t
    (warning,) = report.warnings
    assert warning.where.endswith("end_before_start/Encounter.ndjson:1")
    assert any("1 end before start" in line for line in report.summary_lines())


def test_duplicates_resolved_the_same_whatever_the_file_order(tmp_path):
    """Latest meta.lastUpdated wins (the corpus puts the older copy in the file read first);
    swapping the files' names, so the newer copy is read first, keeps the same one."""
    kept = []
    for swap in (False, True):
        data = tmp_path / f"swap{swap}"
        shutil.copytree(BAD / "duplicate_ids", data)
        if swap:
            (data / "Observation.1.ndjson").rename(data / "tmp")
            (data / "Observation.2.ndjson").rename(data / "Observation.1.ndjson")
            (data / "tmp").rename(data / "Observation.2.ndjson")
        report = ReadReport()
        ((_, resources),) = iter_patients([data], report=report)
        (obs,) = [r for r in resources if r["resourceType"] == "Observation"]
        kept.append(obs)
        assert report.duplicates == 1 and report.warned == 1
        newer, older = (
            ("Observation.1", "Observation.2") if swap else ("Observation.2", "Observation.1")
        )
        (warning,) = report.warnings
        assert warning.where == f"{data / older}.ndjson:1"
        assert f"kept {data / newer}.ndjson:1, not {data / older}.ndjson:1" in warning.what
    assert kept[0] == kept[1] and kept[0]["meta"]["lastUpdated"] == "2025-03-04T08:00:00Z"


def test_duplicates_without_lastupdated_resolved_by_content_hash(tmp_path):
    a = {"resourceType": "Patient", "id": "p1", "gender": "male"}
    b = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    kept = []
    for first, second in ((a, b), (b, a)):
        data = tmp_path / f"{first['gender']}"
        data.mkdir()
        (data / "Patient.ndjson").write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
        ((_, resources),) = iter_patients([data], report=ReadReport())
        kept.append(resources)
    assert kept[0] == kept[1]


def test_identical_duplicates_are_counted_not_warned(tmp_path):
    line = (FIXTURES / "tr1_age80" / "Patient.ndjson").read_text()
    (tmp_path / "a.ndjson").write_text(line)
    (tmp_path / "b.ndjson").write_text(line)
    report = ReadReport()
    list(iter_patients([tmp_path], report=report))
    assert report.duplicates == 1 and report.warned == 0


def test_date_times_without_offset_warned_or_read_in_the_assumed_zone(tmp_path, capsys):
    code, _ = scan(BAD / "no_offset", tmp_path / "f.json")
    err = capsys.readouterr().err
    assert code == 0
    assert "date-time without UTC offset" in err and "read as UTC (set --assume-tz)" in err
    report = ReadReport()
    with values.assume_timezone(values.zone("Europe/Berlin")):
        (timeline,) = iter_timelines(BAD / "no_offset", report=report)
    ed = next(e for e in timeline.events if e.source == "Encounter/ed1-p1-ed" and e.detail)
    assert ed.t == datetime(2025, 4, 2, 16, 0, tzinfo=UTC)  # 18:00 CEST
    assert report.warned == 0


def test_unknown_assume_tz_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scan", str(BAD / "no_offset"), "--assume-tz", "Mars/Olympus"])
    assert exc.value.code == 2
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_deep_nesting_survives_bucketed_staging():
    """orjson writes at most 255 levels; the staging buckets hold such a resource anyway."""
    for buckets in (1, 3):
        report = ReadReport()
        patients = list(iter_patients([BAD / "deep_nesting"], report=report, buckets=buckets))
        (obs,) = [r for _, rs in patients for r in rs if r["resourceType"] == "Observation"]
        depth, node = 0, obs["extension"][0]
        while "extension" in node:
            node, depth = node["extension"][0], depth + 1
        assert depth == 300 and report.skipped == 0


def test_non_utf8_file_names_survive_bucketed_staging(tmp_path):
    name = os.fsdecode(b"Encounter-\xff.ndjson")
    shutil.copy(FIXTURES / "sp1_stroke_day31" / "Encounter.ndjson", tmp_path / name)
    shutil.copy(FIXTURES / "sp1_stroke_day31" / "Patient.ndjson", tmp_path / "Patient.ndjson")
    with (tmp_path / name).open("a") as fh:
        fh.write('{"resourceType": "Encounter", "id": "cut\n')
    report = ReadReport()
    timelines = list(iter_timelines(tmp_path, report=report, buckets=4))
    assert len(timelines) == 1 and len(timelines[0].events) >= 2
    (error,) = report.errors
    assert error.where.endswith("Encounter-\\xff.ndjson:3")
    "\n".join(report.summary_lines()).encode("utf-8")  # printable


def test_symlinked_directories_followed_once_without_looping(tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(FIXTURES / "sp1_dizziness_stroke_day12", outside / "scenario")
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(outside / "scenario", target_is_directory=True)
    (root / "again").symlink_to(outside / "scenario", target_is_directory=True)
    (outside / "scenario" / "loop").symlink_to(root, target_is_directory=True)
    (root / "gone.ndjson").symlink_to(tmp_path / "nowhere.ndjson")
    problems: list = []
    files = list_input_files(root, problems)
    assert sorted(f.name for f in files) == [
        "Condition.ndjson",
        "Encounter.ndjson",
        "Patient.ndjson",
    ]
    assert [p.what for p in problems] == ["unreadable: dangling symbolic link"]
    code, findings = scan(root, tmp_path / "f.json")
    _, clean = scan(FIXTURES / "sp1_dizziness_stroke_day12", tmp_path / "c.json")
    assert code == 0 and keys(findings) == keys(clean)


def test_unreadable_directory_and_file_reported(tmp_path, monkeypatch):
    """Fault injection: the suite runs as root here, where permissions do not stop reads."""
    shutil.copytree(FIXTURES / "sp1_dizziness_stroke_day12", tmp_path / "ok")
    shutil.copytree(FIXTURES / "tr1_fit_no_colonoscopy", tmp_path / "locked")
    shutil.copy(FIXTURES / "tr1_age80" / "Patient.ndjson", tmp_path / "ok" / "Other.ndjson")
    real_scandir, real_open = os.scandir, Path.open

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def open_(self, *args, **kw):  # type: ignore[no-untyped-def]
        if self.name == "Other.ndjson":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "open", open_)
    report = ReadReport()
    items = list(iter_resources(tmp_path, report=report))
    assert sum(1 for i in items if i.resource) == 5
    wheres = sorted(Path(e.where.split(":")[0]).name for e in report.errors)
    assert wheres == ["Other.ndjson", "locked"]
    assert all("Permission denied" in e.what for e in report.errors)
    assert report.skipped_by_reason["unreadable"] == 2


def test_empty_source_is_an_error(tmp_path, capsys):
    with pytest.raises(EmptySource):
        list(iter_timelines(tmp_path, report=ReadReport()))
    (tmp_path / "notes.txt").write_text("not FHIR")
    with pytest.raises(FatalError) as exc:
        main(["scan", str(tmp_path)])
    assert exc.value.exit_code == ExitCode.INPUT_NOT_FOUND
    assert "no FHIR resources read" in exc.value.message
    (tmp_path / "x.ndjson").write_text("not json\n")  # files, nothing readable in them
    with pytest.raises(FatalError) as exc:
        main(["scan", str(tmp_path)])
    assert "1 files, 1 unreadable items" in exc.value.message


def test_comparator_kept_through_staging(tmp_path):
    obs = {
        "resourceType": "Observation",
        "id": "afp",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "1834-1"}]},
        "effectiveDateTime": "2025-03-01T10:00:00Z",
        "valueQuantity": {"value": 25, "comparator": "<", "unit": "ng/mL"},
    }
    (tmp_path / "Observation.ndjson").write_text(json.dumps(obs) + "\n")
    for buckets in (1, 2):
        ((_, resources),) = iter_patients([tmp_path], report=ReadReport(), buckets=buckets)
        assert resources[0]["valueQuantity"]["comparator"] == "<"


def test_events_keep_the_offset_the_chart_wrote():
    """Times are UTC inside; each event keeps its source's UTC offset for local-time output
    (Event.offset_min): -05:00 as written, the --assume-tz zone's offset, none when unknown."""
    (timeline,) = iter_timelines(FIXTURES / "sp1_dizziness_stroke_day12", report=ReadReport())
    ed = next(e for e in timeline.events if e.source == "Encounter/sp1-p1-ed" and e.detail)
    assert (ed.t, ed.offset_min) == (datetime(2025, 2, 11, 3, 0, tzinfo=UTC), -300)
    with values.assume_timezone(values.zone("Europe/Berlin")):
        (timeline,) = iter_timelines(BAD / "no_offset", report=ReadReport())
    assert {e.offset_min for e in timeline.events} == {120}
    (timeline,) = iter_timelines(BAD / "no_offset", report=ReadReport())  # read as UTC: unknown
    assert {e.offset_min for e in timeline.events} == {None}
    (timeline,) = iter_timelines(FIXTURES / "tr1_fobt_coded_positive", report=ReadReport())
    fobt = next(e for e in timeline.events if e.source == "Observation/tr1-p2-fobt")
    assert fobt.date_only and fobt.offset_min is None


def test_train_reports_an_empty_source_with_its_exit_code(tmp_path):
    """Not only scan: any command given a source with no FHIR exits 12 with one line, no
    traceback (main_cli maps EmptySource; train had no handler of its own)."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,index_ref,trigger,scenario,is_mod,missed_dx\n")
    run = subprocess.run(
        [sys.executable, "-m", "plugin.cli", "train", "--data", str(data), "--labels",
         str(labels), "--out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == ExitCode.INPUT_NOT_FOUND, run.stderr
    assert "no FHIR resources read" in run.stderr and "Traceback" not in run.stderr
