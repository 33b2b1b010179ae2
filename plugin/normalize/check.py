"""Consistency checks of the normalisation tables, for ``dxsafety rules lint`` (and a test):
each problem as ``(file, line, message)``. The loader already refuses rows without a source
or with the wrong number of fields; these are the checks of meaning — values a column may
take, units the UCUM reader must read, keys listed twice with different answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from plugin.errors import NormalizeTableError
from plugin.normalize.lookups import CHAIN
from plugin.normalize.tables import TABLES, read_table, table_path, versions
from plugin.normalize.units import is_ucum

__all__ = ["check_tables"]

Problem = tuple[Path, int, str]
SETTINGS = frozenset({"ED", "IP", "OBS", "AMB", "ICU", "VR", "HH", "OTHER"})
_ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("settings", "field"): frozenset(CHAIN),
    ("settings", "match"): frozenset({"exact", "contains"}),
    ("settings", "setting"): SETTINGS,
    ("planned", "field"): frozenset({"priority", "class.code", "admitSource", "text"}),
    ("planned", "match"): frozenset({"exact", "contains", "negate"}),
    ("dispositions", "match"): frozenset({"exact", "contains"}),
    ("dispositions", "group"): frozenset({"home", "admitted", "transfer", "snf", "hospice",
                                          "rehab", "psych", "expired", "ama", "other"}),
    ("locations", "match"): frozenset({"type", "id", "word", "phrase"}),
    ("locations", "kind"): frozenset({"icu", "ed", "ward", "procedural", "observation",
                                      "other"}),
    ("interpretations", "flag"): frozenset({"", "high", "low", "abnormal", "normal"}),
    ("interpretations", "positive"): frozenset({"", "true", "false"}),
    ("qualitative", "meaning"): frozenset({"positive", "negative", "indeterminate"}),
    ("qualitative", "system"): frozenset({"snomed", "loinc", "v2-0078", "text"}),
}  # fmt: skip
# The columns that identify a row: the same key twice with different answers is a conflict.
_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "code_systems": (("uri",), "system"),
    "settings": (("field", "match", "value"), "setting"),
    "admit_sources": (("value",), "code"),
    "dispositions": (("match", "value"), "group"),
    "locations": (("match", "value"), "kind"),
    "interpretations": (("code",), "flag"),
    "qualitative": (("system", "value"), "meaning"),
    "units": (("spelling",), "ucum"),
    "molar_mass": (("system", "code"), "g_per_mol"),
}


def check_tables() -> list[Problem]:
    """Every problem in the shipped tables (an empty list when they are consistent)."""
    out: list[Problem] = []
    for name in TABLES:
        path = table_path(name)
        try:
            rows = read_table(name)
        except NormalizeTableError as exc:
            out.append((path, 1, str(exc)))
            continue
        if name not in versions():
            out.append((path, 1, f"{name} has no version in manifest.csv"))
        out += list(_check_rows(name, path, rows))
    return out


def _check_rows(name: str, path: Path, rows: tuple[dict[str, str], ...]) -> Iterator[Problem]:
    seen: dict[tuple[str, ...], str] = {}
    for line, row in enumerate(rows, start=2):
        for (table, column), allowed in _ALLOWED.items():
            if table == name and row[column] not in allowed:
                yield path, line, f"{column} {row[column]!r} is not one of {sorted(allowed)}"
        if "ord" in row and not row["ord"].isdigit():
            yield path, line, f"ord {row['ord']!r} is not a number"
        if name == "units" and not is_ucum(row["ucum"]):
            yield path, line, f"{row['ucum']!r} is not UCUM the reader accepts"
        if name == "molar_mass":
            try:
                if float(row["g_per_mol"]) <= 0:
                    raise ValueError
            except ValueError:
                yield path, line, f"g_per_mol {row['g_per_mol']!r} is not a positive number"
        if name in _KEYS:
            cols, answer = _KEYS[name]
            key = tuple(row[c] for c in cols)
            if key in seen and seen[key] != row[answer]:
                yield path, line, f"{'/'.join(key)} listed again with a different {answer}"
            seen.setdefault(key, row[answer])
