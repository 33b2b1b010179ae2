"""Write a generated population: Bulk-export NDJSON sorted by resource id, plus the labels.

Layout of ``out``::

    Patient.000.ndjson, Encounter.000.ndjson, Encounter.001.ndjson, ...   (<= 100,000 lines each)
    labels.csv      one row per trigger-positive index event (ground truth)
    excluded.csv    planted cases the rules must NOT flag (exclusions exercised), same columns

Chunks are generated (in worker processes when ``workers > 1``) into sorted temporary files,
then merged by id, so the files are ordered by id whatever the scenario mix or worker count.
"""

from __future__ import annotations

import csv
import gc
import heapq
import multiprocessing
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

import orjson

from plugin.fhir import resource_types
from plugin.synth.population import CHUNK, Label, generate_chunk
from plugin.synth.profiles import PROFILES, writer_for

LINES_PER_FILE = 100_000
LABEL_COLUMNS = (
    "patient_id",
    "index_ref",
    "index_time",
    "trigger",
    "scenario",
    "is_mod",
    "missed_dx",
)
_TMP = ".synth-tmp"
# The files written: one patient's record types, in the table's order (Patient first).
RESOURCE_TYPES: tuple[str, ...] = resource_types.patient_types()


@dataclass(slots=True)
class Summary:
    patients: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    labels: list[Label] = field(default_factory=list)
    excluded: list[Label] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _run_chunk(
    job: tuple[int, int, int, date, Path, str],
) -> tuple[Counter[str], list[Label], list[Label]]:
    seed, chunk, count, as_of, tmp, profile_name = job
    profile = PROFILES[profile_name]
    gc.disable()  # millions of small acyclic dicts: the cyclic collector only costs time here
    try:
        charts, labels, excluded = generate_chunk(seed, chunk, count, as_of, profile)
    finally:
        gc.enable()
    by_type: dict[str, list[tuple[str, bytes]]] = {t: [] for t in RESOURCE_TYPES}
    for chart in charts:
        habits = writer_for(profile, seed, chunk, chart.pid)
        for rtype, rid, res in chart.resources:
            # the site's coding habits are applied as the chart is written: labels come from
            # the chart's facts and stay true
            if habits is None or habits.apply(rtype, res):
                by_type[rtype].append((rid, orjson.dumps(res)))
    counts: Counter[str] = Counter()
    for rtype, rows in by_type.items():
        rows.sort(key=lambda r: r[0])
        counts[rtype] = len(rows)
        with open(tmp / f"{rtype}.{chunk:06d}.ndjson", "wb") as fh:
            fh.write(b"\n".join(line for _, line in rows))
            if rows:
                fh.write(b"\n")
    return counts, labels, excluded


def generate(
    out: Path,
    *,
    patients: int,
    seed: int,
    as_of: date,
    workers: int = 1,
    profile: str = "default",
) -> Summary:
    """Generate ``patients`` patients into ``out`` (created; earlier output replaced) as
    written by the site ``profile`` (:data:`plugin.synth.profiles.PROFILES`)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.ndjson"), out / "labels.csv", out / "excluded.csv"]:
        if old.is_file() and (old.name.split(".")[0] in RESOURCE_TYPES or old.suffix == ".csv"):
            old.unlink()
    tmp = out / _TMP
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    jobs = [
        (seed, k, min(CHUNK, patients - k * CHUNK), as_of, tmp, profile)
        for k in range((patients + CHUNK - 1) // CHUNK)
    ]
    summary = Summary(patients=patients)
    try:
        if workers > 1 and len(jobs) > 1:
            # Not fork: the caller may hold DuckDB's (or LightGBM's OpenMP) threads, and a
            # child forked from a threaded process can crash on a lock a thread held (seen:
            # segfaults in these workers after an in-process DuckDB scan). The fork server
            # forks workers from a process that never ran either.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            with ctx.Pool(workers) as pool:
                results = list(pool.imap(_run_chunk, jobs))
        else:
            results = [_run_chunk(job) for job in jobs]
        for counts, labels, excluded in results:
            summary.resources.update(counts)
            summary.labels.extend(labels)
            summary.excluded.extend(excluded)
        for rtype in RESOURCE_TYPES:
            summary.files.extend(_merge(rtype, sorted(tmp.glob(f"{rtype}.*.ndjson")), out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary.labels.sort(key=lambda r: (r.patient_id, r.index_time, r.trigger))
    summary.excluded.sort(key=lambda r: (r.patient_id, r.index_time, r.trigger))
    _write_csv(out / "labels.csv", summary.labels)
    _write_csv(out / "excluded.csv", summary.excluded)
    return summary


def _merge(rtype: str, parts: list[Path], out: Path) -> list[Path]:
    """Merge id-sorted chunk files into ``<Type>.NNN.ndjson`` files of LINES_PER_FILE lines."""
    start = len(f'{{"resourceType":"{rtype}","id":"')
    handles = [open(p, "rb") for p in parts]
    written: list[Path] = []
    try:
        lines: Iterator[bytes] = heapq.merge(*handles, key=lambda ln: ln[start : start + 36])
        fh: IO[bytes] | None = None
        for n, line in enumerate(lines):
            if n % LINES_PER_FILE == 0:
                if fh is not None:
                    fh.close()
                path = out / f"{rtype}.{n // LINES_PER_FILE:03d}.ndjson"
                written.append(path)
                fh = open(path, "wb")
            assert fh is not None  # noqa: S101 (set on the first line)
            fh.write(line)
        if fh is not None:
            fh.close()
    finally:
        for h in handles:
            h.close()
    return written


def _write_csv(path: Path, rows: list[Label]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(LABEL_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r.patient_id,
                    r.index_ref,
                    r.index_time,
                    r.trigger,
                    r.scenario,
                    r.is_mod,
                    r.missed_dx,
                ]
            )


def read_labels(path: Path) -> list[Label]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            Label(
                r["patient_id"],
                r["index_ref"],
                r["index_time"],
                r["trigger"],
                r["scenario"],
                int(r["is_mod"]),
                r["missed_dx"],
            )
            for r in csv.DictReader(fh)
        ]
