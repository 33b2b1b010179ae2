"""The normalisation tables load, every row has a source, and their meaning is consistent."""

from __future__ import annotations

import pytest

from plugin.errors import NormalizeTableError
from plugin.normalize import tables
from plugin.normalize.check import check_tables


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_every_table_loads_with_a_version_and_sources(name):
    rows = tables.read_table(name)
    assert rows, f"{name} is empty"
    assert all(row["source"].strip() for row in rows)
    assert tables.version(name)
    assert tables.table_path(name).is_file()


def test_the_shipped_tables_are_consistent():
    assert check_tables() == []


def test_unknown_table_is_an_error():
    with pytest.raises(NormalizeTableError, match="unknown normalisation table"):
        tables.table_path("nope")


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """The loader pointed at a scratch copy of the tables (caches cleared around the test)."""
    for name in tables.TABLES:
        (tmp_path / f"{name}.csv").write_bytes(tables.table_path(name).read_bytes())
    (tmp_path / "manifest.csv").write_bytes((tables.TABLES_DIR / "manifest.csv").read_bytes())
    monkeypatch.setattr(tables, "TABLES_DIR", tmp_path)
    tables.read_table.cache_clear()
    tables.versions.cache_clear()
    yield tmp_path
    tables.read_table.cache_clear()
    tables.versions.cache_clear()


def test_a_row_without_source_names_file_and_line(scratch):
    path = scratch / "units.csv"
    path.write_text(path.read_text() + "mmHG,mm[Hg],\n")
    line = len(path.read_text().splitlines())
    with pytest.raises(NormalizeTableError, match=rf"units.csv:{line}: every row needs a source"):
        tables.read_table("units")


def test_a_missing_column_is_reported(scratch):
    (scratch / "qualitative.csv").write_text("system,value,source\nsnomed,1,x\n")
    with pytest.raises(NormalizeTableError, match=r"qualitative\.csv:1: missing column"):
        tables.read_table("qualitative")


def test_check_finds_bad_values_and_conflicts(scratch):
    units = scratch / "units.csv"
    units.write_text(units.read_text() + "mIU/L,not a unit,local: test\n")
    loc = scratch / "locations.csv"
    loc.write_text(loc.read_text() + "999,word,PACU,floor,local: test\n")
    problems = [message for _, _, message in check_tables()]
    assert any("'not a unit' is not UCUM" in m for m in problems)
    assert any("mIU/L listed again with a different ucum" in m for m in problems)
    assert any("kind 'floor' is not one of" in m for m in problems)
