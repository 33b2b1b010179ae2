"""Partitioned flattening: a population larger than memory, one patient partition at a time.

:func:`read_partitioned` reads every input file once. The fast files (NDJSON of one type,
see :func:`plugin.population.flatten.read_resources`) are typed by DuckDB's JSON reader and
written as Parquet partitioned by ``hash(patient) % parts``, each resource's patient
resolved first (a conditional ``Patient?identifier=`` reference against every Patient's
identifiers), so all of a patient's resources land in one partition. The other files are
read into ``res`` as the single-pass read does; the shared types (Location, Medication) are
kept whole. The damaged-file checks and the no-offset warnings run over everything read.

:func:`load_part` then sets up one partition's resources exactly as
:func:`~plugin.population.flatten.flatten_resources` expects them after a single-pass read.
Every rule reads one patient's timeline, so running the rules partition by partition gives
the findings of one pass over the whole population (``tests/population/test_partition.py``);
memory and the working files are bounded by a partition, not by the population.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/in_list()

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from plugin.fhir.read import ReadReport, list_input_files
from plugin.fhir.resource_types import R4_TYPES, shared_types, timeline_types
from plugin.population.flatten import (
    PREF,
    check_damaged,
    damaged_files,
    fields_of,
    files_of,
    first_type,
    no_offset_warnings,
    p0_of,
    p0_sql,
    pident_sql,
    read_full,
    read_in_full,
    survey_view,
    typed_files,
    typed_split,
)
from plugin.population.vocab import in_list, lit

# input bytes per partition (JSON as written; a .gz file counts 7x its size): a partition
# of about 130,000 synthetic patients (a single pass spills past the memory limit; the
# partitions bound its working files, which at a million patients outgrow the disk)
PART_BYTES = 6_000_000_000
_GZ_RATIO = 7
# with a memory limit, input bytes per partition per byte of it: the flattening of 4.6 GB of
# JSON (100,000 patients) ran in 1500MB, a partition of 5.9 GB (125,000) ran out of it in
# the event projection, whose joins and unions hold more than DuckDB can spill
_PER_LIMIT = 2
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def limit_bytes(memory_limit: str | None) -> int | None:
    """DuckDB's ``memory_limit`` text (``1500MB``, ``2GiB``) in bytes; None without one, or
    for text DuckDB reads but this does not (a percentage): the default partition size."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", memory_limit or "")
    if m is None or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def part_bytes_for(memory_limit: str | None) -> int:
    """Input bytes per partition under ``memory_limit``."""
    limit = limit_bytes(memory_limit)
    return PART_BYTES if limit is None else max(1, min(PART_BYTES, _PER_LIMIT * limit))


def parts_for(sources: Sequence[str | Path], part_bytes: int = PART_BYTES) -> int:
    """How many partitions a scan of ``sources`` takes (1: a single pass)."""
    size = 0
    for src in sources:
        for f in list_input_files(Path(src)):
            size += f.stat().st_size * (_GZ_RATIO if f.name.endswith(".gz") else 1)
    return max(1, math.ceil(size / part_bytes))


@dataclass
class Partitioned:
    """What :func:`read_partitioned` read: where the partitions are, and the counts."""

    parts: int
    root: Path
    types: dict[str, int] = field(default_factory=dict)  # resources read, by type
    partitioned: list[str] = field(default_factory=list)  # types written as partitions
    shared: list[str] = field(default_factory=list)  # fast shared types, kept whole
    damaged: list[str] = field(default_factory=list)
    dropped: int = 0


def read_partitioned(
    con: duckdb.DuckDBPyConnection,
    sources: Sequence[str | Path],
    parts: int,
    root: Path,
    report: ReadReport | None = None,
) -> Partitioned | None:
    """Read ``sources`` into ``parts`` partitions under ``root`` (see the module doc).
    None when there are no files."""
    nd, js = files_of(sources)
    if not nd and not js:
        return None
    out = Partitioned(parts=parts, root=root)
    root.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    slow: list[str] = []
    for f in nd:
        rt = first_type(f)
        if rt in R4_TYPES and rt not in ("Bundle", "OperationOutcome"):
            by_type.setdefault(str(rt), []).append(f)
        else:
            slow.append(f)
    con.execute("CREATE OR REPLACE TEMP TABLE refused (f VARCHAR)")
    # every Patient's identifiers first: a conditional reference decides the partition (a
    # Patient file the typed reader refuses is read in full now, its identifiers with it)
    pats = ["SELECT id, r.identifier AS ident FROM res WHERE rt = 'Patient'"]
    if "Patient" in by_type:
        ident = {"id": "VARCHAR", "identifier": fields_of("Patient")["identifier"]}

        def idents(fs: list[str]) -> None:
            con.execute("CREATE OR REPLACE TEMP TABLE pat_ident AS SELECT r.id, "
                        f"r.identifier AS ident FROM {typed_files(fs, ident)}")  # fmt: skip

        refused = typed_split(con, by_type["Patient"], ident, idents)
        slow += refused
        by_type["Patient"] = [f for f in by_type["Patient"] if f not in set(refused)]
        if by_type["Patient"]:
            pats.append("SELECT id, ident FROM pat_ident")
    read_full(con, slow, js)
    shared = in_list(shared_types())
    con.execute(pident_sql("pident_all", " UNION ALL ".join(pats)))
    con.execute("DROP TABLE IF EXISTS pat_ident")
    con.execute("CREATE OR REPLACE TEMP TABLE fast (f VARCHAR, rt VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE excluded (f VARCHAR)")
    rels: dict[str, str] = {}
    for rt, all_files in sorted(by_type.items()):
        if not all_files:  # its files refused (the Patients' above)
            continue
        if rt in shared_types():  # res_<Type> as the single-pass read keeps it

            def typed(fs: list[str], rt: str = rt) -> None:
                con.execute(f"CREATE OR REPLACE TEMP TABLE res_{rt} AS SELECT * EXCLUDE (p), "
                            f"NULL::VARCHAR AS p0 FROM ({_typed_read(rt, fs)})")  # fmt: skip

            refused = typed_split(con, all_files, fields_of(rt), typed)
            rel = f"res_{rt}"
        else:
            refused = _write_parts(con, rt, all_files, parts, root / rt)
            rel = f"read_parquet({lit(str(root / rt / '*' / '*.parquet'))})"
        # a file the typed reader refuses is read in full (it is damaged: damaged_files)
        files = [f for f in all_files if f not in set(refused)]
        if refused:
            con.executemany("INSERT INTO excluded VALUES (?)", [(f,) for f in refused])
            read_full(con, refused, [], append=True)
        if not files:
            continue
        (out.shared if rt in shared_types() else out.partitioned).append(rt)
        rels[rt] = rel
        # a file holding another type, or a value the reader cannot use, is read in full
        # (it is damaged: damaged_files)
        sql = f"SELECT DISTINCT fname FROM {rel} WHERE rt IS DISTINCT FROM {lit(rt)}"
        mixed = [str(f) for (f,) in con.execute(sql).fetchall()]
        if mixed:
            con.executemany("INSERT INTO excluded VALUES (?)", [(f,) for f in mixed])
            read_full(con, mixed, [], append=True)
        kept = [(f, rt) for f in files if f not in set(mixed)]
        if kept:
            con.executemany("INSERT INTO fast VALUES (?, ?)", kept)
    keep = timeline_types()
    survey_view(con, {rt: _without_excluded(rel) for rt, rel in rels.items()})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE res_files AS SELECT fname AS f, rt, count(*) AS n "
        "FROM rs GROUP BY ALL"
    )
    con.execute(f"DELETE FROM res WHERE rt IS NULL OR rt NOT IN {in_list(keep)}")
    survey_view(con, {rt: _without_excluded(rel) for rt, rel in rels.items() if rt in keep})
    for _f, rt, n in con.execute("SELECT * FROM res_files").fetchall():
        if rt in R4_TYPES and rt not in ("Bundle", "OperationOutcome"):
            out.types[rt] = out.types.get(rt, 0) + int(n)
    out.partitioned = [rt for rt in out.partitioned if rt in keep]
    out.shared = [rt for rt in out.shared if rt in keep]
    # the damaged files: read in full (out of the partitions), the Python reader's report
    out.damaged = damaged_files(con)
    moved: list[str] = []
    if out.damaged and out.partitioned:
        sql = (f"SELECT f FROM fast WHERE f IN {in_list(out.damaged)} "
               f"AND rt IN {in_list(out.partitioned)}")  # fmt: skip
        moved = [str(f) for (f,) in con.execute(sql).fetchall()]
    if moved:
        con.executemany("INSERT INTO excluded VALUES (?)", [(f,) for f in moved])
        con.execute(f"DELETE FROM fast WHERE f IN {in_list(moved)}")
        read_full(con, moved, [], append=True)
    read_in_full(con, out.damaged)  # the shared types' fast files
    out.dropped = check_damaged(con, out.damaged, report)
    if report is not None:
        no_offset_warnings(con, out.damaged, report)
    # the patients of the resources read in full, resolved once for every partition
    con.execute(f"DELETE FROM res WHERE rt IS NULL OR rt NOT IN {in_list(keep)}")
    con.execute("ALTER TABLE res ADD COLUMN p0 VARCHAR")
    con.execute(f"UPDATE res SET p0 = {p0_sql(shared)}")
    con.execute("""
        UPDATE res SET p0 = pident_all.pid FROM pident_all
        WHERE starts_with(res.p0, '?') AND pident_all.k = qkey(res.p0)
    """)
    con.execute("UPDATE res SET p0 = NULL WHERE starts_with(p0, '?')")
    con.execute("ALTER TABLE res RENAME TO res_all")
    for rt in out.shared:
        con.execute(f"ALTER TABLE res_{rt} RENAME TO gres_{rt}")
    con.execute("ALTER TABLE fast RENAME TO fast_all")
    con.execute("DROP VIEW rs")
    return out


def _typed_read(rt: str, files: list[str]) -> str:
    return (f"SELECT filename AS fname, r.resourceType AS rt, r.id AS id, {PREF} AS pref, "
            f"{p0_of(rt)} AS p, r FROM {typed_files(files, fields_of(rt))}")  # fmt: skip


def _write_parts(
    con: duckdb.DuckDBPyConnection, rt: str, files: list[str], parts: int, dest: Path
) -> list[str]:
    """The fast ``files`` of type ``rt`` as Parquet under ``dest/bucket=<partition>``. A
    resource naming its patient by a conditional reference goes to ``bucket=<parts>``, to
    be resolved against every Patient's identifiers (:func:`_resolve_conditional`): a join
    in the large write would hold the identifiers of the whole population beside it.
    Written in batches of files with small row groups: a partitioned write buffers rows per
    partition and thread, which for these nested rows ran out of memory at 1 GB. Returns
    the files the typed reader refuses (:func:`~plugin.population.flatten.typed_split`)."""
    con.execute(f"SET partitioned_write_flush_threshold = {_ROW_GROUP}")
    refused: list[str] = []
    for n, batch in enumerate(_batches(files, _BATCH_BYTES)):

        def write(fs: list[str], n: int = n) -> None:
            for old in dest.glob(f"bucket=*/b{n}_*"):  # a refused write's partial files
                old.unlink()
            con.execute(f"""
                COPY (SELECT fname, rt, id, pref, p AS p0, r,
                             CASE WHEN starts_with(p, '?') THEN {parts}
                                  ELSE hash(coalesce(p, '')) % {parts} END AS bucket
                      FROM ({_typed_read(rt, fs)}))
                TO {lit(str(dest))} (FORMAT parquet, PARTITION_BY (bucket),
                                     OVERWRITE_OR_IGNORE true,
                                     FILENAME_PATTERN {lit(f"b{n}_{{i}}")},
                                     ROW_GROUP_SIZE {_ROW_GROUP})
            """)

        refused += typed_split(con, batch, fields_of(rt), write)
    if refused and len(refused) == len(files):
        return refused
    _resolve_conditional(con, rt, parts, dest)
    return refused


_BATCH_BYTES = 1_000_000_000  # JSON input per partitioned write (a .gz file counts 7x)
_ROW_GROUP = 20_000


def _batches(files: list[str], limit: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for f in files:
        n = Path(f).stat().st_size * (_GZ_RATIO if f.endswith(".gz") else 1)
        if out[-1] and size + n > limit:
            out.append([])
            size = 0
        out[-1].append(f)
        size += n
    return out


def _resolve_conditional(
    con: duckdb.DuckDBPyConnection, rt: str, parts: int, dest: Path
) -> None:
    """``cres_<Type>``: the resources of ``bucket=<parts>`` with their patient resolved as
    flatten resolves it (no such Patient: NULL), for :func:`load_part` to add to the
    partition that patient falls in."""
    files = sorted((dest / f"bucket={parts}").glob("*.parquet"))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cres_{rt} AS
        SELECT x.* EXCLUDE (p0, bucket), pident_all.pid AS p0
        FROM {_parquet(files, like=dest)} x LEFT JOIN pident_all ON pident_all.k = qkey(x.p0)
    """)


def _without_excluded(rel: str) -> str:
    return f"(SELECT * FROM {rel} WHERE fname NOT IN (SELECT f FROM excluded))"


def load_part(con: duckdb.DuckDBPyConnection, read: Partitioned, part: int) -> None:
    """Partition ``part`` as :func:`~plugin.population.flatten.flatten_resources` reads it:
    ``res`` (its resources read in full, with ``p0``), ``res_<Type>`` and ``fast``."""
    shared = in_list(shared_types())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE res AS SELECT * FROM res_all
        WHERE rt IN {shared} OR hash(coalesce(p0, '')) % {read.parts} = {part}
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE fast (f VARCHAR, rt VARCHAR)")
    for rt in read.partitioned:
        files = sorted((read.root / rt / f"bucket={part}").glob("*.parquet"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE res_{rt} AS SELECT * EXCLUDE (bucket) FROM "
                    f"{_parquet(files, like=read.root / rt)} "
                    "WHERE fname NOT IN (SELECT f FROM excluded)")  # fmt: skip
        con.execute(f"INSERT INTO fast SELECT f, rt FROM fast_all WHERE rt = {lit(rt)}")
        con.execute(f"INSERT INTO res_{rt} BY NAME SELECT * FROM cres_{rt} "
                    "WHERE fname NOT IN (SELECT f FROM excluded) "
                    f"AND hash(coalesce(p0, '')) % {read.parts} = {part}")  # fmt: skip
    for rt in read.shared:
        con.execute(f"CREATE OR REPLACE TEMP TABLE res_{rt} AS SELECT * FROM gres_{rt}")
        con.execute(f"INSERT INTO fast SELECT f, rt FROM fast_all WHERE rt = {lit(rt)}")


def _parquet(files: list[Path], like: Path) -> str:
    """The rows of ``files``; none (with the columns of any partition under ``like``)."""
    if files:
        return f"read_parquet({_vlist(files)}, hive_partitioning = true)"
    return (f"(SELECT * FROM read_parquet({lit(str(like / '*' / '*.parquet'))}, "
            "hive_partitioning = true) LIMIT 0)")  # fmt: skip


def _vlist(files: list[Path]) -> str:
    return "[" + ", ".join(lit(str(f)) for f in files) + "]"


def drop(con: duckdb.DuckDBPyConnection, read: Partitioned) -> None:
    """The tables :func:`read_partitioned` kept for every partition."""
    for rt in read.shared:
        con.execute(f"DROP TABLE IF EXISTS gres_{rt}")
    for rt in read.partitioned:
        con.execute(f"DROP TABLE IF EXISTS cres_{rt}")
    for table in ("res_all", "fast_all", "excluded", "pident_all"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def counts_total(parts: list[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(int(p.get(k, 0)) for p in parts) for k in ("events", "patients")}
