"""The DuckDB scan reports a read as the Python engine does (issue 12, with issue 11's rules).

The SQL path reads JSON without a Python object per resource, so it cannot say file:line by
itself. Files holding something the reader skips or warns about are found in SQL and re-read
by the Python reader (only those); date-times without an offset are counted in SQL. These
tests hold the two engines' reports, and what they skip, to each other on the damaged
fixtures, and check a clean export pays for no re-read.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import EmptySource, ExitCode, FatalError, FhirParseError
from plugin.fhir.read import ReadReport
from plugin.fhir.values import NO_OFFSET
from plugin.population.flatten import connect, flatten
from plugin.population.scan import scan_sql
from plugin.scan import scan_population
from tests.population.shared import synth

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fhir_fixtures"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _items(errors: list[FhirParseError], *, where: bool = True) -> list[tuple[object, ...]]:
    return sorted((e.where if where else "", e.what, e.resource_type or "", e.resource_id or "")
                  for e in errors)  # fmt: skip


def _same_report(py: ReadReport, sql: ReadReport) -> None:
    assert sql.read == py.read and sql.files == py.files
    assert sql.skipped == py.skipped and sql.skipped_by_reason == py.skipped_by_reason
    assert _items(sql.errors) == _items(py.errors)
    assert sql.warned_by_reason == py.warned_by_reason
    assert sql.duplicates == py.duplicates
    # the warnings the Python reader gives for re-read files are its own, file:line and all;
    # a no-offset warning counted in SQL names the file, not the line
    exact = [w for w in py.warnings if not w.what.startswith(NO_OFFSET)]
    assert _items([w for w in sql.warnings if not w.what.startswith(NO_OFFSET)]) == _items(exact)
    no_offset = [w for w in py.warnings if w.what.startswith(NO_OFFSET)]
    sql_no_offset = [w for w in sql.warnings if w.what.startswith(NO_OFFSET)]
    assert _items(sql_no_offset, where=False) == _items(no_offset, where=False)
    for w in sql_no_offset:  # the file the value is in
        assert any(p.where.startswith(w.where) for p in no_offset)


def test_damaged_fixtures_report_the_same(ruleset) -> None:  # type: ignore[no-untyped-def]
    py = scan_population(FIXTURES, ruleset, as_of=AS_OF)
    sql = scan_sql(FIXTURES, ruleset, as_of=AS_OF)
    assert py.report.skipped >= 6 and py.report.warned >= 10  # the corpus still bites
    _same_report(py.report, sql.report)
    assert sorted(f.key for f in sql.findings) == sorted(f.key for f in py.findings)


def test_a_resource_the_python_reader_skips_is_not_read(tmp_path: Path) -> None:
    """bad-o1's value is a string where a number belongs: DuckDB's typed reader alone would
    read it as absent and keep the Observation; the Python reader skips it, so must the SQL
    path (an Encounter with an unparseable date likewise)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "bad" / "mixed.ndjson", src / "mixed.ndjson")
    con = connect()
    report = ReadReport()
    counts = flatten(con, [src], report)
    assert counts["damaged"] == [str(src / "mixed.ndjson")]
    sources = {s for (s,) in con.execute("SELECT DISTINCT source FROM events").fetchall()}
    assert "Observation/bad-o1" not in sources
    assert "Encounter/bad-e1" not in sources
    assert "Condition/bad-c2" in sources  # the good lines are read
    assert any(e.where.endswith("mixed.ndjson:7") for e in report.errors)


def test_a_clean_export_is_not_read_twice(tmp_path: Path) -> None:
    bulk = Path("/work/shared/data/bulk-ndjson-10-patients")
    if not bulk.exists():
        pytest.skip("shared Bulk sample not present")
    con = connect()
    report = ReadReport()
    counts = flatten(con, [bulk], report)
    assert counts["resources"] > 0
    assert counts["damaged"] == []
    assert report.skipped == 0


def test_a_staged_rescan_reports_the_problems_again(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stage = tmp_path / "stage"
    first = scan_sql(FIXTURES / "bad", ruleset, as_of=AS_OF, stage_dir=stage)
    again = scan_sql(FIXTURES / "bad", ruleset, as_of=AS_OF, stage_dir=stage)
    assert first.report.skipped > 0
    assert _items(again.report.errors) == _items(first.report.errors)
    assert again.report.warned_by_reason == first.report.warned_by_reason
    assert again.report.duplicates == first.report.duplicates > 0


def test_nothing_to_read_is_an_error(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptySource):
        scan_sql(tmp_path / "empty", ruleset, as_of=AS_OF)
    with pytest.raises(FatalError) as exc:
        main(["scan", str(tmp_path / "empty"), "--engine", "duckdb"])
    assert exc.value.exit_code == ExitCode.INPUT_NOT_FOUND
    (tmp_path / "empty" / "x.ndjson").write_text("not json\n")  # a file, nothing readable
    with pytest.raises(FatalError) as exc:
        main(["scan", str(tmp_path / "empty"), "--engine", "duckdb"])
    assert exc.value.exit_code == ExitCode.INPUT_NOT_FOUND


def test_worklist_snapshots_equal_the_python_engines(tmp_path: Path) -> None:
    """``scan --store`` with the SQL engine gives each case its patient's timeline as the
    Python engine does (before: the cases had no snapshot)."""
    import sqlalchemy as sa

    from plugin.worklist import tables
    from plugin.worklist.store import Store

    src = FIXTURES / "bad"  # odd files: a byte order mark, NDJSON in .json, duplicates
    snaps = {}
    for engine in ("python", "duckdb"):
        url = f"sqlite:///{tmp_path}/{engine}.db"
        assert main(["scan", str(src), "--engine", engine, "--as-of", "2026-11-01",
                     "--store", url, "--out", str(tmp_path / f"{engine}.csv")]) == 0  # fmt: skip
        store = Store(url)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.findings.c.key, tables.findings.c.snapshot))
            snaps[engine] = {k: s for k, s in rows}
        store.close()
    assert snaps["python"] and all(s and s["events"] for s in snaps["python"].values())
    assert snaps["duckdb"] == snaps["python"]


def test_the_engine_draws_no_progress_bar() -> None:
    """DuckDB draws a progress bar on stdout for a query over ~2 s: in a long scan it landed
    in the findings a scan writes there (seen in the bench's child output)."""
    con = connect()
    assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)


def _shape_errors(src: Path) -> dict[str, str]:
    """Malform, in place, one line each of a clean synthetic export: a field written in
    another JSON shape (a string where an object or a list belongs), as a hand-made exporter
    writes it. Returns each malformed resource's field. The Python reader skips the first
    two with file:line; a subject it cannot read leaves the Condition without a patient and
    an identifier is not read by the timeline (both silently, in both engines)."""
    import orjson

    def first_line_of(pattern: str, change: dict[str, object]) -> str:
        path = sorted(src.glob(pattern))[0]
        lines = path.read_bytes().splitlines()
        r = orjson.loads(lines[0])
        lines[0] = orjson.dumps({**r, **change})
        path.write_bytes(b"\n".join(lines) + b"\n")
        return f"{r['resourceType']}/{r['id']}"

    return {
        first_line_of("Observation.*.ndjson", {"code": "8867-4"}): "code",
        first_line_of("Condition.*.ndjson", {"subject": "Patient/x"}): "subject",
        first_line_of("Encounter.*.ndjson", {"type": {"text": "visit"}}): "type",
        first_line_of("Patient.*.ndjson", {"identifier": "MRN-1"}): "identifier",
    }


@pytest.mark.parametrize("parts", [None, 2])
def test_a_field_of_another_shape_is_reported_as_the_python_reader_does(
    ruleset, tmp_path: Path, parts: int | None  # type: ignore[no-untyped-def]
) -> None:
    """A field of another JSON shape in an otherwise clean NDJSON file: DuckDB's typed
    reader read it as absent and said nothing (0 skipped); the Python reader skips the
    resource with file:line. The SQL path now refuses such a file to its typed reader and
    has the Python reader decide, single pass and partitioned."""
    src = synth(tmp_path / "pop", 120, 4)
    bad = _shape_errors(src)
    py = scan_population(src, ruleset, as_of=AS_OF)
    skipped = {f"{e.resource_type}/{e.resource_id}" for e in py.report.errors}
    assert skipped == {r for r, field in bad.items() if field in ("code", "type")}
    sql = scan_sql(src, ruleset, as_of=AS_OF, parts=parts)
    _same_report(py.report, sql.report)
    assert sorted(f.key for f in sql.findings) == sorted(f.key for f in py.findings)
