"""A population, one patient at a time, with bounded memory: the one population pipeline.

``iter_timelines(sources, validate=..., report=report)`` is the entry point every command and
library function that reads a population uses (scan, training data, the synth PPV check,
worklist import, rule fixtures; :func:`plugin.scan.iter_findings` adds the rules). It yields
each patient's :class:`~plugin.timeline.model.Timeline`, built exactly once, and fills
``report`` (:class:`~plugin.fhir.read.ReadReport`, required so no caller can drop it) with what
was read and every resource skipped, by ``file:line``; callers print it with
:meth:`ReadReport.summary_lines`. A single patient's resources already in memory (CDS, tests)
go through :func:`plugin.fhir.parse.timeline_from_resources` instead.

Bulk NDJSON is grouped by resource type (all Conditions, then all Encounters...), but a timeline
needs all the resources of one patient. The input is staged:

1. **Partition.** Every resource is read once (:func:`plugin.fhir.read.iter_resources`), its
   patient found (``Patient.id``; ``subject`` / ``patient`` / ``beneficiary`` references in
   ``Patient/X``, ``urn:uuid:X`` or absolute form; conditional ``Patient?identifier=`` references
   are resolved after the pass against the Patients' identifiers), and the resource is appended
   as one line ``patient<TAB>where<TAB>json`` to bucket file ``crc32(patient) % N`` in a temporary
   directory. Resources with no patient are not staged: Locations are kept (names and types, for
   ICU detection) and Medications (codes behind ``medicationReference``); Organization,
   Practitioner and the like are dropped. Types the timeline does not read (``types``) are
   counted and dropped, so Claims and EOBs cost nothing later.
2. **Group.** Buckets are read one at a time, grouped by patient, and the patients taken in a
   deterministic order (bucket index, then patient id). A ``Type/id`` read twice (overlapping
   exports) is kept once and counted in ``report.duplicates``; when the copies differ, the one
   with the latest ``meta.lastUpdated`` is kept, ties broken by the larger hash of the content
   (so file order never changes what is kept), and a warning names both places. The Locations
   and Medications a patient's resources refer to are added to its resources.
3. **Validate and build.** Each resource is checked (``validate``: ``"full"`` — R4B pydantic
   models, then as fast; ``"fast"`` — the converters' typed reads, see
   :mod:`plugin.fhir.validate`; ``"none"`` — no check beyond the converters' own), failures
   reported by ``file:line`` in ``report`` and skipped. In fast and full mode the check *is* the
   conversion, so the timeline it builds is the one yielded: nothing is converted twice.

:func:`iter_patients` yields the validated raw resources instead, for the staging tests and
tools that need the JSON itself; it is not a way to build timelines (use
:func:`iter_timelines`).

**Memory** is bounded by the largest bucket, not the population. ``N`` is chosen from the input
size so that a bucket holds about ``BUCKET_BYTES`` (16 MB) of input JSON — a hundred or two
Synthea-sized patients (~150 KB each) or a few thousand MIMIC-sized ones — and Python dicts
take roughly 10x their JSON size. Measured with ``bench/fhir_edge_bench.py`` on 30 renamed
copies of the MIMIC and Bulk samples (319k resources, 302 MB of NDJSON, validate=fast): peak
RSS 380 MiB with 10 buckets of ~30 MB, 204–236 MiB with 19–20 of ~15 MB (the default).
Write buffers are ``flush_bytes`` per bucket (16 KB–1 MB, all together about 64 MB at most).
Inputs under one bucket are grouped in memory without writing buckets.

**Scaling.** ``N`` grows with the input up to ``MAX_BUCKETS`` (4,096): 100,000 patients of
~150 KB NDJSON each (~15 GB) → ~940 buckets of 16 MB, ~200 MiB peak for staging; 1,000,000
patients (~150 GB) → 4,096 buckets of ~37 MB, ~400 MiB peak. Beyond that the bucket size, and
so memory, grows linearly (raise ``MAX_BUCKETS`` on a machine that allows it). Temporary disk is
about the size of the staged input after the types filter; time is linear (every staged
resource is parsed twice: partition and group). Files are opened per flush, so ``N`` is not
limited by open-file limits.
"""

from __future__ import annotations

import base64
import hashlib
import marshal
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from plugin.errors import FhirParseError
from plugin.fhir.parse import TIMELINE_TYPES, timeline_from_resources
from plugin.fhir.read import ReadReport, iter_resources, list_input_files, nothing_read
from plugin.fhir.refs import ReferenceIndex
from plugin.fhir.resource_types import shared_types
from plugin.fhir.validate import Mode, check_full
from plugin.fhir.values import Malformed, parse_datetime
from plugin.timeline.model import Timeline

__all__ = [
    "BUCKET_BYTES",
    "MAX_BUCKETS",
    "Sources",
    "choose_buckets",
    "iter_patients",
    "iter_timelines",
    "patient_of",
]

JSON = dict[str, Any]
Sources = str | Path | Sequence[str | Path]  # a file or directory, or several
BUCKET_BYTES = 16 * 1024 * 1024
MAX_BUCKETS = 4096
_BUFFER_TOTAL = 64 * 1024 * 1024
_GZ_RATIO = 8  # NDJSON compresses about 8:1
_SHARED_TYPES = shared_types()  # Location, Medication: joined to the patients that refer to them
_PATIENT_KEYS = ("subject", "patient", "beneficiary")


def choose_buckets(paths: Iterable[Path], bucket_bytes: int = BUCKET_BYTES) -> int:
    total = 0
    for path in paths:
        for f in list_input_files(path):
            try:
                size = f.stat().st_size
            except OSError:  # gone or unreadable: reported when it is read
                continue
            total += size * _GZ_RATIO if f.name.lower().endswith(".gz") else size
    return min(MAX_BUCKETS, max(1, -(-total // bucket_bytes)))


def patient_of(r: JSON) -> str | None:
    """The patient id a resource belongs to; ``?identifier...`` for a conditional reference;
    None when it belongs to no patient."""
    if r.get("resourceType") == "Patient":
        rid = r.get("id")
        return rid if isinstance(rid, str) else None
    for key in _PATIENT_KEYS:
        ref_obj = r.get(key)
        ref = ref_obj.get("reference") if isinstance(ref_obj, dict) else None
        if not isinstance(ref, str):
            continue
        if ref.startswith("Patient/") and ref.count("/") == 1:  # the common case, fast
            return ref[8:]
        if ref.startswith("urn:uuid:"):
            return ref[len("urn:uuid:") :]
        if ref.startswith("Patient?"):
            return ref[len("Patient") :]
        parts = ref.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2] == "Patient":
            return parts[-1]
    return None


class _Buckets:
    """N append-only bucket files (or one in-memory list when N == 1)."""

    def __init__(self, n: int, directory: Path):
        self.n = n
        self.dir = directory
        self.memory: list[tuple[str, str, JSON]] = []
        self.buffers = [bytearray() for _ in range(n)] if n > 1 else []
        self.flush_bytes = max(16 * 1024, min(1024 * 1024, _BUFFER_TOTAL // n))

    def add(self, pid: str, where: str, resource: JSON) -> None:
        if self.n == 1:
            self.memory.append((pid, where, resource))
            return
        i = zlib.crc32(pid.encode()) % self.n
        buf = self.buffers[i]
        where = where.replace("\t", " ").replace("\n", " ")
        buf += b"%s\t%s\t%s\n" % (pid.encode(), where.encode(), _dump(resource))
        if len(buf) >= self.flush_bytes:
            self._flush(i)

    def _flush(self, i: int) -> None:
        with (self.dir / f"{i:05d}.tsv").open("ab") as fh:
            fh.write(self.buffers[i])
        self.buffers[i] = bytearray()

    def groups(self) -> Iterator[dict[str, list[tuple[str, JSON]]]]:
        """Each bucket's resources grouped by patient (bucket order)."""
        if self.n == 1:
            grouped: dict[str, list[tuple[str, JSON]]] = {}
            for pid, where, res in self.memory:
                grouped.setdefault(pid, []).append((where, res))
            self.memory = []
            yield grouped
            return
        for i in range(self.n):
            if self.buffers[i]:
                self._flush(i)
        for i in range(self.n):
            path = self.dir / f"{i:05d}.tsv"
            if not path.exists():
                continue
            grouped = {}
            with path.open("rb") as fh:
                for line in fh:
                    key, at, raw = line.rstrip(b"\n").split(b"\t", 2)
                    grouped.setdefault(key.decode(), []).append((at.decode(), _load(raw)))
            path.unlink()
            yield grouped


def _dump(resource: JSON) -> bytes:
    """One bucket line's JSON. orjson refuses nesting deeper than 255, which a valid input may
    hold (orjson reads up to 1,024); such a resource is stored as ``M`` + base64 of marshal
    (which nests to 2,000), never on one line with a tab or newline."""
    try:
        return orjson.dumps(resource)
    except orjson.JSONEncodeError:
        return b"M" + base64.b64encode(marshal.dumps(resource))


def _load(raw: bytes) -> JSON:
    if raw[:1] == b"M":
        # Only lines this process wrote into its own private temporary directory.
        value: JSON = marshal.loads(base64.b64decode(raw[1:]))  # noqa: S302
        return value
    loaded: JSON = orjson.loads(raw)
    return loaded


def iter_timelines(
    sources: Sources,
    *,
    validate: Mode = "fast",
    report: ReadReport,
    buckets: int | None = None,
    tmp_dir: str | Path | None = None,
) -> Iterator[Timeline]:
    """Every patient's timeline in ``sources``, built once; see the module doc.

    ``report`` receives what was read and each skipped resource with its ``file:line``.
    ``buckets`` (default: from the input size) and ``tmp_dir`` tune staging. Raises
    :class:`~plugin.errors.EmptySource` when the sources hold no resource at all (no files, or
    nothing readable in them): a scan of nothing is not a clean scan.
    """
    for patient in _staged(_paths(sources), validate, report, buckets, TIMELINE_TYPES, tmp_dir):
        yield patient.timeline()


def iter_patients(
    paths: Iterable[str | Path],
    *,
    validate: Mode = "fast",
    report: ReadReport | None = None,
    buckets: int | None = None,
    types: frozenset[str] | None = TIMELINE_TYPES,
    tmp_dir: str | Path | None = None,
) -> Iterator[tuple[str, list[JSON]]]:
    """Yield ``(patient_id, resources)``: each patient's validated raw resources (for staging
    checks and tools that need the JSON; timelines come from :func:`iter_timelines`).

    ``types=None`` keeps every resource type.
    """
    report = report if report is not None else ReadReport()
    roots = [Path(p) for p in paths]
    for patient in _staged(roots, validate, report, buckets, types, tmp_dir):
        yield patient.id, patient.resources


class _Patient(NamedTuple):
    id: str
    resources: list[JSON]  # validated, with the Locations and Medications they refer to
    built: Timeline | None  # the timeline validation built (fast and full mode)

    def timeline(self) -> Timeline:
        if self.built is not None:
            return self.built
        return timeline_from_resources(self.resources, validate="none", patient_id=self.id)


def _paths(sources: Sources) -> list[Path]:
    if isinstance(sources, str | Path):
        return [Path(sources)]
    return [Path(p) for p in sources]


def _staged(
    roots: list[Path],
    validate: Mode,
    report: ReadReport,
    buckets: int | None,
    types: frozenset[str] | None,
    tmp_dir: str | Path | None,
) -> Iterator[_Patient]:
    n = buckets or choose_buckets(roots)
    with tempfile.TemporaryDirectory(prefix="dxsafety-stage-", dir=tmp_dir) as tmp:
        store = _Buckets(n, Path(tmp))
        shared = _partition(roots, store, report, types)
        if report.read == 0:
            raise nothing_read(roots, report)
        for grouped in store.groups():
            for pid in sorted(grouped):
                yield _validated(grouped[pid], pid, validate, report, shared)


class _Shared:
    """Patient-less resources the timeline uses: Locations and Medications."""

    def __init__(self) -> None:
        self.by_ref: dict[str, JSON] = {}
        self.index = ReferenceIndex(())

    def add(self, r: JSON) -> None:
        if r["resourceType"] == "Location":
            keep = ("resourceType", "id", "name", "identifier", "type", "physicalType", "meta")
            r = {k: r[k] for k in keep if k in r}
        key = f"{r['resourceType']}/{r.get('id')}"
        old = self.by_ref.get(key)
        if old is None or _version_key(r) > _version_key(old):  # same rule as patients' data
            self.by_ref[key] = r

    def finish(self) -> None:
        self.index = ReferenceIndex(self.by_ref.values())

    def referenced(self, resources: list[JSON]) -> list[JSON]:
        if not self.by_ref:
            return []
        found: dict[str, JSON] = {}
        for r in resources:
            refs = []
            if r.get("resourceType") == "Encounter" and isinstance(r.get("location"), list):
                refs += [e.get("location") for e in r["location"] if isinstance(e, dict)]
            refs.append(r.get("medicationReference"))
            for ref in refs:
                target = ref.get("reference") if isinstance(ref, dict) else None
                res = self.index.resolve(target) if isinstance(target, str) else None
                if res is not None:
                    found.setdefault(f"{res['resourceType']}/{res.get('id')}", res)
        return list(found.values())


class _Spool:
    """An append-only side file of tab-separated lines, written through a buffer."""

    def __init__(self, path: Path):
        self.path = path
        self.buffer = bytearray()
        self.count = 0

    def write(self, *fields: bytes) -> None:
        self.buffer += b"\t".join(fields) + b"\n"
        self.count += 1
        if len(self.buffer) >= 1024 * 1024:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with self.path.open("ab") as fh:
                fh.write(self.buffer)
            self.buffer = bytearray()

    def lines(self) -> Iterator[list[bytes]]:
        self.flush()
        if self.path.exists():
            with self.path.open("rb") as fh:
                for line in fh:
                    yield line.rstrip(b"\n").split(b"\t")


def _partition(
    roots: list[Path], store: _Buckets, report: ReadReport, types: frozenset[str] | None
) -> _Shared:
    shared = _Shared()
    # Conditional patient references are resolved after the pass, from two side files (so
    # neither they nor every patient's identifiers are held in memory).
    deferred = _Spool(store.dir / "deferred.tsv")  # query, where, resource JSON
    identifiers = _Spool(store.dir / "identifiers.tsv")  # "system|value", patient id
    for root in roots:
        for item in iter_resources(root, report=report):
            r = item.resource
            if r is None:
                continue
            rtype = r["resourceType"]
            if rtype in _SHARED_TYPES:
                shared.add(r)
                continue
            if types is not None and rtype not in types:
                report.not_used[rtype] += 1
                continue
            pid = patient_of(r)
            if pid is None:
                report.no_patient[rtype] += 1
                continue
            if not pid or "\t" in pid or "\n" in pid:
                report.add_error(
                    FhirParseError(item.where, f"bad patient id {pid!r}", rtype, r.get("id")),
                    "bad patient id",
                )
                continue
            if pid.startswith("?"):
                where = item.where.replace("\t", " ").encode()
                deferred.write(pid.encode(), where, orjson.dumps(r))
                continue
            if rtype == "Patient":
                for key in _identifier_keys(r):
                    identifiers.write(key.encode(), pid.encode())
            store.add(pid, item.where, r)
    if deferred.count:
        _resolve_deferred(deferred, identifiers, store, report)
    shared.finish()
    return shared


def _identifier_keys(patient: JSON) -> Iterator[str]:
    idents = patient.get("identifier")
    for ident in idents if isinstance(idents, list) else []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            system = ident.get("system") if isinstance(ident.get("system"), str) else ""
            yield f"{system}|{ident['value']}"
            yield f"|{ident['value']}"


def _resolve_deferred(
    deferred: _Spool, identifiers: _Spool, store: _Buckets, report: ReadReport
) -> None:
    wanted = {_query_key(q.decode()) for q, _w, _r in deferred.lines()}
    wanted.discard(None)
    found: dict[str, str] = {}
    for ident, patient in identifiers.lines():
        if ident.decode() in wanted:
            found.setdefault(ident.decode(), patient.decode())
    for query, where, raw in deferred.lines():
        r = orjson.loads(raw)
        wanted_key = _query_key(query.decode())
        pid = found.get(wanted_key) if wanted_key else None
        if pid is None:
            report.add_error(
                FhirParseError(
                    where.decode(),
                    f"unresolved patient reference Patient{query.decode()}",
                    r.get("resourceType"),
                    r.get("id"),
                ),
                "unresolved patient reference",
            )
        else:
            store.add(pid, where.decode(), r)


def _query_key(query: str) -> str | None:
    """``?identifier=system|value`` → ``system|value`` (``|value`` without a system)."""
    for param in query.lstrip("?").split("&"):
        name, _, value = param.partition("=")
        if name == "identifier" and value:
            return value if "|" in value else f"|{value}"
    return None


def _validated(
    items: list[tuple[str, JSON]], pid: str, mode: Mode, report: ReadReport, shared: _Shared
) -> _Patient:
    items = _deduplicated(items, report)
    resources = [r for _, r in items]
    extra = shared.referenced(resources)
    if mode == "none":
        return _Patient(pid, resources + extra, None)
    if mode == "full":
        checked = []
        for where, r in items:
            reason = check_full(r)
            if reason is None:
                checked.append((where, r))
            else:
                _reject(report, where, r, reason)
        items = checked
        resources = [r for _, r in items]
    # fast (and after full): the conversion is the check; keep the timeline it builds.
    errors: list[FhirParseError] = []
    warnings: list[FhirParseError] = []
    timeline = timeline_from_resources(
        resources + extra, validate="fast", errors=errors, patient_id=pid, warnings=warnings
    )
    where_of = {(r.get("resourceType"), r.get("id")): where for where, r in items}
    for w in warnings:
        key = (w.resource_type, w.resource_id)
        report.add_warning(FhirParseError(where_of.get(key, w.where), w.what, *key))
    if not errors:
        return _Patient(pid, resources + extra, timeline)
    rejected = set()
    for err in errors:
        key = (err.resource_type, err.resource_id)
        rejected.add(key)
        report.add_error(FhirParseError(where_of.get(key, err.where), err.what, *key), _reason(err))
    kept = [r for r in resources if (r.get("resourceType"), r.get("id")) not in rejected]
    return _Patient(pid, kept + extra, timeline)


def _deduplicated(items: list[tuple[str, JSON]], report: ReadReport) -> list[tuple[str, JSON]]:
    """One copy of each ``Type/id``; overlapping exports repeat resources. Identical copies
    count as duplicates; differing ones keep the latest ``meta.lastUpdated`` (then the larger
    content hash: deterministic whatever the file order) and are reported as a warning."""
    chosen: dict[tuple[str, str], tuple[str, JSON]] = {}
    order: list[tuple[str, str] | int] = []  # first position of each key (or an id-less item)
    loose: list[tuple[str, JSON]] = []
    for where, r in items:
        rid = r.get("id")
        if not isinstance(rid, str):
            order.append(len(loose))
            loose.append((where, r))
            continue
        key = (r["resourceType"], rid)
        old = chosen.get(key)
        if old is None:
            chosen[key] = (where, r)
            order.append(key)
            continue
        report.duplicates += 1
        if old[1] == r:
            continue
        keep, drop = (where, r), old
        if _version_key(r) < _version_key(old[1]):
            keep, drop = old, (where, r)
        chosen[key] = keep
        what = (
            f"duplicate id with different content: kept {keep[0]}, not {drop[0]} "
            "(latest meta.lastUpdated, then content hash)"
        )
        report.add_warning(FhirParseError(drop[0], what, *key), "duplicate id, different content")
    return [loose[k] if isinstance(k, int) else chosen[k] for k in order]


def _version_key(r: JSON) -> tuple[str, str]:
    """Which of two copies of a resource is newer: ``meta.lastUpdated`` (as UTC text, so
    offsets compare right; missing or unreadable sorts first), then the hash of the content."""
    meta = r.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    stamp = ""
    if isinstance(updated, str):
        try:
            stamp = parse_datetime(updated)[0].isoformat()
        except Malformed:
            stamp = ""
    try:
        content = orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        content = marshal.dumps(r)
    return stamp, hashlib.sha256(content).hexdigest()


def _reason(error: FhirParseError) -> str:
    """The kind of problem, without the value (``unparseable date '2025-13-45'`` → ``unparseable
    date``), so that the report counts skipped resources by a few reasons."""
    return error.what.split(":")[0].split(" '")[0]


def _reject(report: ReadReport, where: str, r: JSON, reason: str) -> None:
    rid = r.get("id") if isinstance(r.get("id"), str) else None
    report.add_error(
        FhirParseError(where, reason, r.get("resourceType"), rid), reason.split(":")[0]
    )
