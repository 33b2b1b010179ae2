"""A large Bulk NDJSON population from a smaller one: K copies, every id rewritten.

    .venv/bin/python bench/make_population.py /tmp/synth20k /tmp/pop100k --copies 5
    .venv/bin/python bench/make_population.py /tmp/synth20k /tmp/pop1m --copies 50 --gzip

Copy ``k`` (``k = 0 … K-1``) of every input file is written as its own NDJSON file
(``Observation.003.k012.ndjson[.gz]``: one type per file, as a Bulk export). Copy 0 is the
input byte for byte; in copy ``k >= 1``:

* every ``"id"`` value gets the prefix ``c<k>-`` (resource ids, contained-resource ids and
  element ids alike), and so does the id part of every ``reference`` and ``fullUrl``
  (``Type/id``, ``Type/id/_history/v``, ``http://base/Type/id``, ``urn:uuid:id``, ``#id``),
  so each copy is a population of its own patients, linked exactly as the original.
  A *prefix* rather than a suffix keeps the lexicographic order of ids (the timeline's tie
  break) the same in every copy; conditional references (``Patient?identifier=…``) and
  identifiers are kept as written and counted in the manifest;
* with ``--shift-days D``, every date at the start of a JSON string (``"YYYY-MM-DD…``) is
  moved ``k mod (D+1)`` days earlier, the same for every resource of the copy, so the copies
  are not identical but every interval between two events of a patient is unchanged
  (earlier, not later: no window of a copy closes after the original's ``as_of``).

Rewriting is byte-level: each input file is scanned once per worker with regular expressions
for the insertion points (no JSON object model), and each copy is then one ``bytes.join``
of the file's segments with that copy's prefix and dates. Two worker processes by default;
``--gzip`` writes ``.ndjson.gz`` (zlib level 1: about 15 % of the size; DuckDB and the
Python reader read it). ``labels.csv``/``excluded.csv`` of a ``dxsafety synth`` population
are replicated with the same rewriting. ``population.manifest`` (JSON; not a FHIR file name)
records the counts; output files are written under a temporary name and renamed when
complete, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

MANIFEST = "population.manifest"
LABEL_FILES = ("labels.csv", "excluded.csv")

_ID = re.compile(rb'"id"\s*:\s*"([^"\\]*)"')
_REF = re.compile(rb'"(?:reference|fullUrl)"\s*:\s*"([^"\\]*)"')
_DATE = re.compile(rb'"(\d{4}-\d\d-\d\d)')
_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
_HISTORY = b"/_history/"


def prefix(k: int) -> str:
    """The id prefix of copy ``k`` (copy 0 keeps the ids)."""
    return f"c{k}-" if k else ""


def shift_of(k: int, shift_days: int) -> int:
    """Days copy ``k`` is moved earlier."""
    return k % (shift_days + 1)


def ref_id_offset(ref: bytes) -> int | None:
    """Where the id starts inside a reference value, or None when there is none to rewrite
    (a conditional reference, a bare ``#``, a value without ``Type/``)."""
    if ref.startswith(b"urn:uuid:"):
        return 9 if len(ref) > 9 else None
    if ref.startswith(b"#"):
        return 1 if len(ref) > 1 else None
    if b"?" in ref:
        return None
    head = ref.split(_HISTORY, 1)[0]
    slash = head.rfind(b"/")
    if slash <= 0 or slash == len(head) - 1:
        return None
    return slash + 1


class Template:
    """One input file cut at its insertion points: ``segs[i]`` is followed by ``seps[i]``,
    None for "the copy's prefix here" or a date (10 bytes) the copy may shift."""

    __slots__ = ("conditional", "dates", "lines", "segs", "seps", "types")

    def __init__(self, data: bytes):
        points: list[tuple[int, bytes | None]] = []
        starts: set[int] = set()
        for m in _ID.finditer(data):
            if m.end(1) > m.start(1):
                points.append((m.start(1), None))
                starts.add(m.start(1))
        self.conditional = 0
        for m in _REF.finditer(data):
            off = ref_id_offset(m.group(1))
            if off is None:
                self.conditional += b"?" in m.group(1)
                continue
            points.append((m.start(1) + off, None))
            starts.add(m.start(1))
        for m in _DATE.finditer(data):
            if m.start(1) not in starts:  # an id that looks like a date is an id
                points.append((m.start(1), m.group(1)))
        points.sort(key=lambda p: p[0])
        segs: list[bytes] = []
        seps: list[bytes | None] = []
        at = 0
        for pos, what in points:
            segs.append(data[at:pos])
            seps.append(what)
            at = pos + (len(what) if what is not None else 0)
        segs.append(data[at:])
        self.segs = segs
        self.seps = seps
        self.dates = {s for s in seps if s is not None}
        self.lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        # Bulk files hold one type each; count per line's first resourceType anyway
        self.types: Counter[str] = Counter()
        for line in data.splitlines():
            m = _TYPE.search(line)
            if m:
                self.types[m.group(1).decode()] += 1

    def render(self, k: int, shift_days: int) -> bytes:
        pre = prefix(k).encode()
        days = shift_of(k, shift_days)
        table = {d: shift_date(d, days) for d in self.dates}
        seps = [pre if s is None else table[s] for s in self.seps]
        out: list[bytes] = [b""] * (len(self.segs) + len(seps))
        out[0::2] = self.segs
        out[1::2] = seps
        return b"".join(out)


def shift_date(value: bytes, days: int) -> bytes:
    """``YYYY-MM-DD`` moved ``days`` earlier (an invalid date is kept as written)."""
    if not days:
        return value
    try:
        moved = date.fromisoformat(value.decode()) - timedelta(days=days)
    except ValueError:
        return value
    return moved.isoformat().encode() if moved.year >= 1 else value


def rewrite(data: bytes, k: int, shift_days: int = 0) -> bytes:
    """Copy ``k`` of NDJSON ``data`` (see the module doc)."""
    return Template(data).render(k, shift_days)


def read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def input_files(src: Path) -> list[Path]:
    files = sorted(p for p in src.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
    return [p for p in files if p.name not in ("log.ndjson", "log.ndjson.gz")]


def out_name(path: Path, k: int, gz: bool) -> str:
    stem = path.name.removesuffix(".gz").removesuffix(".ndjson")
    return f"{stem}.k{k:03d}.ndjson" + (".gz" if gz else "")


_CACHE: dict[str, Template] = {}


def _task(path: str, ks: list[int], out: str, shift_days: int, gz: bool, level: int) -> dict:
    """Write copies ``ks`` of one input file; returns its counts and bytes written."""
    template = _CACHE.get(path)
    if template is None:
        _CACHE.clear()  # one file at a time per worker: bounded memory
        template = Template(read_bytes(Path(path)))
        _CACHE[path] = template
    written = 0
    for k in ks:
        final = Path(out) / out_name(Path(path), k, gz)
        if final.exists():  # complete (renamed into place only when written)
            written += final.stat().st_size
            continue
        data = template.render(k, shift_days)
        if gz:
            z = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member
            data = z.compress(data) + z.flush()
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
        written += len(data)
    return {
        "lines": template.lines * len(ks),
        "types": {t: n * len(ks) for t, n in template.types.items()},
        "conditional": template.conditional * len(ks),
        "bytes": written,
    }


def _batches(files: list[Path], copies: int, per: int) -> Iterator[tuple[str, list[int]]]:
    # largest files first: the long tasks start early and the pool ends together
    for f in sorted(files, key=lambda p: -p.stat().st_size):
        for lo in range(0, copies, per):
            yield str(f), list(range(lo, min(copies, lo + per)))


def replicate_labels(src: Path, out: Path, copies: int, shift_days: int) -> None:
    """``labels.csv``/``excluded.csv`` for the copies: patient ids, index references and
    index times rewritten as the resources were."""
    for name in LABEL_FILES:
        if not (src / name).exists():
            continue
        with (src / name).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        with (out / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for k in range(copies):
                for row in rows:
                    w.writerow(_label_row(row, k, shift_days))


def _label_row(row: dict[str, str], k: int, shift_days: int) -> dict[str, str]:
    out = dict(row)
    pre = prefix(k)
    if out.get("patient_id"):
        out["patient_id"] = pre + out["patient_id"]
    ref = out.get("index_ref") or ""
    off = ref_id_offset(ref.encode())
    if off is not None:
        out["index_ref"] = ref[:off] + pre + ref[off:]
    t = out.get("index_time") or ""
    if len(t) >= 10:
        out["index_time"] = shift_date(t[:10].encode(), shift_of(k, shift_days)).decode() + t[10:]
    return out


def make_population(
    src: Path,
    out: Path,
    copies: int,
    *,
    shift_days: int = 0,
    gz: bool = False,
    level: int = 1,
    workers: int = 2,
) -> dict:
    """Write ``copies`` rewritten copies of the NDJSON population ``src`` into ``out``;
    returns (and writes) the manifest."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    files = input_files(src)
    if not files:
        raise ValueError(f"{src}: no .ndjson or .ndjson.gz files")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per = math.ceil(copies / math.ceil(copies / 16))  # <= 16 copies per task
    tasks = list(_batches(files, copies, per))
    lines = conditional = written = 0
    types: Counter[str] = Counter()
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_task, f, ks, str(out), shift_days, gz, level) for f, ks in tasks]
        for fut in futures:
            r = fut.result()
            lines += r["lines"]
            conditional += r["conditional"]
            written += r["bytes"]
            types.update(r["types"])
    replicate_labels(src, out, copies, shift_days)
    manifest = {
        "source": str(src.resolve()),
        "copies": copies,
        "shift_days": shift_days,
        "gzip": gz,
        "resources": lines,
        "types": dict(sorted(types.items())),
        "patients": types.get("Patient", 0),
        "conditional_references_kept": conditional,
        "bytes": written,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="folder of Bulk NDJSON (e.g. from dxsafety synth)")
    ap.add_argument("out", type=Path, help="output folder (resumes an interrupted run)")
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--copies", type=int, help="K copies (copy 0 is the input)")
    size.add_argument("--patients", type=int, help="target patients (a multiple of the input's)")
    ap.add_argument(
        "--shift-days",
        type=int,
        default=0,
        help="copy k moves every date k mod (D+1) days earlier (default 0)",
    )
    ap.add_argument("--gzip", action="store_true", help="write .ndjson.gz (level --level)")
    ap.add_argument("--level", type=int, default=1, help="gzip level (default 1: fastest)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    copies = args.copies
    if copies is None:
        have = sum(
            Template(read_bytes(p)).types.get("Patient", 0)
            for p in input_files(args.src)
            if p.name.startswith("Patient")
        )
        if not have or args.patients % have:
            print(
                f"error: {args.src} has {have} patients; --patients must be a multiple",
                file=sys.stderr,
            )
            return 2
        copies = args.patients // have
    try:
        m = make_population(
            args.src,
            args.out,
            copies,
            shift_days=args.shift_days,
            gz=args.gzip,
            level=args.level,
            workers=args.workers,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: {m['patients']:,} patients, {m['resources']:,} resources in "
        f"{copies} copies, {m['bytes'] / 1e9:.2f} GB, {m['seconds']:.1f} s"
    )
    if m["conditional_references_kept"]:
        print(
            f"note: {m['conditional_references_kept']:,} conditional references kept as "
            "written (they resolve to the first copy's patient)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
