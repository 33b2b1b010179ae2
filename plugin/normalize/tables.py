"""Loader of the normalisation tables (``plugin/normalize/tables/*.csv``; see README.md).

Tables are read on first use and cached for the life of the process: they are package data,
not configuration, so a change means a new release (and a new ``manifest.csv`` version).
Rows are plain ``dict[str, str]``; typed look-ups over them live in :mod:`.lookups`.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from plugin.errors import NormalizeTableError

__all__ = ["TABLES", "TABLES_DIR", "Row", "read_table", "table_path", "version", "versions"]

TABLES_DIR = Path(__file__).parent / "tables"
Row = dict[str, str]
# name -> the columns every row must have (besides ``source``, required everywhere)
TABLES: dict[str, tuple[str, ...]] = {
    "code_systems": ("uri", "system"),
    "settings": ("ord", "field", "match", "value", "setting"),
    "planned": ("ord", "field", "match", "value"),
    "admit_sources": ("value", "code"),
    "dispositions": ("ord", "match", "value", "group"),
    "locations": ("ord", "match", "value", "kind"),
    "interpretations": ("code", "flag", "positive"),
    "qualitative": ("system", "value", "meaning"),
    "units": ("spelling", "ucum"),
    "molar_mass": ("system", "code", "analyte", "g_per_mol"),
}


def table_path(name: str) -> Path:
    if name not in TABLES:
        raise NormalizeTableError(f"unknown normalisation table {name!r}")
    return TABLES_DIR / f"{name}.csv"


@cache
def read_table(name: str) -> tuple[Row, ...]:
    """The rows of table ``name``, in file order. Raises :class:`NormalizeTableError` with
    ``file:line`` when a row lacks a required column or its ``source``."""
    path = table_path(name)
    wanted = (*TABLES[name], "source")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in wanted if c not in (reader.fieldnames or ())]
        if missing:
            raise NormalizeTableError(f"{path}:1: missing column(s) {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(row.get(c) is None for c in wanted):
                raise NormalizeTableError(f"{path}:{line}: wrong number of fields")
            if not row["source"].strip():
                raise NormalizeTableError(f"{path}:{line}: every row needs a source")
            rows.append({k: v for k, v in row.items() if k is not None})
    return tuple(rows)


@cache
def versions() -> dict[str, str]:
    """``{table: version}`` from ``manifest.csv``."""
    path = TABLES_DIR / "manifest.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["table"]: row["version"] for row in csv.DictReader(fh)}


def version(name: str) -> str:
    table_path(name)
    found = versions().get(name)
    if found is None:
        raise NormalizeTableError(f"{TABLES_DIR / 'manifest.csv'}: no version for {name!r}")
    return found
