"""Read FHIR R4 JSON from files: NDJSON (Bulk layout), Bundles and single resources.

:func:`iter_resources` walks a file or a directory (recursively, in sorted order, so runs are
deterministic) and yields one :class:`ReadItem` per resource or per problem. Nothing here raises
on bad input: a truncated line, a line that is not JSON, a JSON value that is not an object, an
object without a known ``resourceType`` is yielded as a :class:`FhirParseError` with ``where``
(``file:line`` for NDJSON, ``file:entry[i]`` for Bundle entries) and reading goes on.

What is read:

* ``*.ndjson``, ``*.ndjson.gz``: one resource per line (a line holding a Bundle is expanded).
  Bulk export's ``log.ndjson`` (not FHIR) is skipped and listed in ``ReadReport.ignored_files``.
* ``*.json``, ``*.json.gz``: a Bundle (any type; ``entry[].resource``) or a single resource.
  A Bundle entry whose resource has no ``id`` but a ``fullUrl`` of ``urn:uuid:X`` gets ``id = X``
  so that ``urn:uuid:`` references resolve (Synthea transaction Bundles); when an entry has both
  and they differ, references to its ``fullUrl`` are rewritten to ``Type/id``.
* OperationOutcome resources (Bulk error files, searchset outcomes) are not patient data: they are
  counted in ``ReadReport.outcomes`` with their first messages kept, not yielded.
* Folders named ``expected`` (golden outputs beside fixtures) and hidden files are not read.

Damaged input is read where it can be and reported where it cannot (issue 11): a UTF-8 byte
order mark is skipped; a ``.json`` file that holds NDJSON is read line by line (with a warning);
symbolic links to directories are followed, each real directory once (no loops); a directory or
file that cannot be listed or opened, or a dangling link, is reported as skipped; file names that
are not UTF-8 are shown with ``\\xNN`` escapes (every ``where`` is printable UTF-8).

Whole JSON files are loaded at once (a Bundle is one JSON document); NDJSON streams line by line.
"""

from __future__ import annotations

import gzip
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from plugin.errors import EmptySource, FhirParseError
from plugin.fhir.resource_types import R4_TYPES

__all__ = ["ReadItem", "ReadReport", "display", "iter_resources", "list_input_files"]

_NDJSON = (".ndjson", ".ndjson.gz")
_JSON = (".json", ".json.gz")
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which JSON parsers refuse
_IGNORED_NAMES = frozenset({"log.ndjson", "log.ndjson.gz"})
_TYPE_RE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
_ID_RE = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"')


@dataclass(frozen=True, slots=True)
class ReadItem:
    """One resource (``resource`` set) or one unreadable item (``error`` set)."""

    resource: dict[str, Any] | None
    where: str
    error: FhirParseError | None = None


@dataclass(slots=True)
class ReadReport:
    """What was read and what was skipped. Mutable counters, filled while reading."""

    max_errors: int = 100
    files: int = 0
    resources: Counter[str] = field(default_factory=Counter)  # read, by resourceType
    skipped: int = 0
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    errors: list[FhirParseError] = field(default_factory=list)  # the first max_errors
    ignored_files: list[str] = field(default_factory=list)
    outcomes: int = 0  # OperationOutcome resources seen (not patient data)
    outcome_messages: list[str] = field(default_factory=list)
    not_used: Counter[str] = field(default_factory=Counter)  # types the timeline does not read
    no_patient: Counter[str] = field(default_factory=Counter)  # staged input with no patient
    duplicates: int = 0  # the same Type/id read more than once (kept once)
    # Read, but with a caveat (placeholder date, end before start, no UTC offset, the same
    # Type/id with different content...): counted by reason, the first max_errors kept.
    warned: int = 0
    warned_by_reason: Counter[str] = field(default_factory=Counter)
    warnings: list[FhirParseError] = field(default_factory=list)

    def add_error(self, error: FhirParseError, reason: str | None = None) -> None:
        self.skipped += 1
        self.skipped_by_reason[reason or error.what.split(":")[0]] += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(error)

    def add_warning(self, warning: FhirParseError, reason: str | None = None) -> None:
        self.warned += 1
        self.warned_by_reason[reason or warning.what.split(":")[0]] += 1
        if len(self.warnings) < self.max_errors:
            self.warnings.append(warning)

    def record(self, item: ReadItem) -> None:
        """Count one item from :func:`iter_resources`."""
        if item.error is not None:
            self.add_error(item.error)
        elif item.resource is not None:
            self.resources[item.resource["resourceType"]] += 1

    @property
    def by_type(self) -> Counter[str]:
        """Resources read, by resourceType (alias of ``resources``)."""
        return self.resources

    @property
    def read(self) -> int:
        return sum(self.resources.values())

    def summary_lines(self, examples: int = 10) -> list[str]:
        """The report for people, one line each, as every command that reads a population
        prints it (on stderr): resources read, skipped with counts by reason, the first
        ``examples`` skipped as ``file:line: Type/id reason``, then duplicates, outcomes and
        ignored files when there are any."""
        line = f"{self.read} resources read in {self.files} files, {self.skipped} skipped"
        if self.skipped_by_reason:
            reasons = ", ".join(f"{n} {why}" for why, n in self.skipped_by_reason.most_common())
            line += f" ({reasons})"
        lines = [line]
        shown = self.errors[:examples]
        lines += [f"  skipped: {error}" for error in shown]
        if self.skipped > len(shown):
            lines.append(f"  ... and {self.skipped - len(shown)} more skipped")
        if self.warned:
            reasons = ", ".join(f"{n} {why}" for why, n in self.warned_by_reason.most_common())
            lines.append(f"{self.warned} warnings ({reasons})")
            lines += [f"  warning: {w}" for w in self.warnings[:examples]]
            if self.warned > examples:
                lines.append(f"  ... and {self.warned - examples} more warnings")
        if self.duplicates:
            lines.append(f"{self.duplicates} resources read more than once, kept once")
        if self.outcomes:
            first = f": {self.outcome_messages[0]}" if self.outcome_messages else ""
            lines.append(f"{self.outcomes} OperationOutcome resources (not patient data){first}")
        if self.ignored_files:
            first, more = self.ignored_files[0], " ..." if len(self.ignored_files) > 1 else ""
            lines.append(f"{len(self.ignored_files)} files not FHIR, not read: {first}{more}")
        return lines


def nothing_read(roots: Sequence[str | Path], report: ReadReport) -> EmptySource:
    """The error for a source that gave no resource at all (every engine raises it): a scan
    of nothing is not "0 patients, 0 findings"."""
    names = ", ".join(str(r) for r in roots)
    detail = (
        f"{report.files} files, {report.skipped} unreadable items"
        if (report.files or report.skipped)
        else "no FHIR files (.ndjson, .json, .gz)"
    )
    return EmptySource(f"{names}: no FHIR resources read ({detail})")


def list_input_files(path: Path, problems: list[FhirParseError] | None = None) -> list[Path]:
    """The FHIR files under ``path`` (itself if it is a file), sorted. Symbolic links to
    directories are followed, each real directory once; what cannot be listed (a directory
    without permission, a dangling link) is appended to ``problems``."""
    if path.is_file():
        return [path]
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(where: str, why: str) -> None:
        if problems is not None:
            problems.append(_error(where, f"unreadable: {why}"))

    def walk(directory: Path) -> None:
        try:
            st = directory.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen:  # a link back up the tree, or two links to one directory
                return
            seen.add(key)
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            unreadable(display(directory), exc.strerror or str(exc))
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "expected":
                continue
            p = directory / entry.name
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                unreadable(display(p), exc.strerror or str(exc))
                continue
            if is_dir:
                walk(p)
            elif is_file:
                if entry.name.lower().endswith(_NDJSON + _JSON):
                    found.append(p)
            elif entry.is_symlink() and entry.name.lower().endswith(_NDJSON + _JSON):
                unreadable(display(p), "dangling symbolic link")

    walk(path)
    return sorted(found)


def display(path: Path) -> str:
    """``path`` as printable UTF-8: bytes of a non-UTF-8 name become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def iter_resources(path: str | Path, *, report: ReadReport | None = None) -> Iterator[ReadItem]:
    """Yield every resource (or problem) in a file or directory; see the module docstring."""
    problems: list[FhirParseError] = []
    files = list_input_files(Path(path), problems)
    for problem in problems:
        yield ReadItem(None, problem.where, problem)
        if report is not None:
            report.add_error(problem, "unreadable")
    for file in files:
        if report is not None:
            report.files += 1
        name = file.name.lower()
        if name in _IGNORED_NAMES:
            if report is not None:
                report.ignored_files.append(display(file))
            continue
        items = _iter_ndjson(file) if name.endswith(_NDJSON) else _iter_json(file, report)
        for item in items:
            res = item.resource
            if res is not None and res.get("resourceType") == "OperationOutcome":
                if report is not None:
                    report.outcomes += 1
                    if len(report.outcome_messages) < 20:
                        report.outcome_messages.append(f"{item.where}: {_outcome_text(res)}")
                continue
            if report is not None:
                report.record(item)
            yield item


def _open(file: Path) -> IO[bytes]:
    if file.name.lower().endswith(".gz"):
        return gzip.GzipFile(file, "rb")  # type: ignore[return-value]
    return file.open("rb")


def _iter_ndjson(file: Path) -> Iterator[ReadItem]:
    lineno = 0
    name = display(file)
    try:
        with _open(file) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1:
                    raw = raw.removeprefix(_BOM)
                if not raw.strip():
                    continue
                yield from _items_from_bytes(raw, f"{name}:{lineno}")
    except (OSError, EOFError) as exc:  # truncated .gz, unreadable file
        at = f"{name}:{lineno + 1}"
        yield ReadItem(None, at, _error(at, f"unreadable: {exc}"))


def _iter_json(file: Path, report: ReadReport | None = None) -> Iterator[ReadItem]:
    name = display(file)
    try:
        with _open(file) as fh:
            raw = fh.read().removeprefix(_BOM)
    except (OSError, EOFError) as exc:
        yield ReadItem(None, name, _error(name, f"unreadable: {exc}"))
        return
    if _looks_like_ndjson(raw):
        if report is not None:
            report.add_warning(_error(name, "a .json file holding NDJSON: read line by line"))
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                yield from _items_from_bytes(line, f"{name}:{lineno}")
        return
    yield from _items_from_bytes(raw, name)


def _looks_like_ndjson(raw: bytes) -> bool:
    """Several lines, the first of them a whole JSON object (a Bundle or resource written over
    several lines has a first line such as ``{``, which is not)."""
    head, newline, rest = raw.lstrip().partition(b"\n")
    if not newline or not rest.strip() or not head.rstrip().endswith(b"}"):
        return False
    try:
        return isinstance(orjson.loads(head), dict)
    except orjson.JSONDecodeError:
        return False


def _items_from_bytes(raw: bytes, where: str) -> Iterator[ReadItem]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        rtype = _TYPE_RE.search(raw)
        rid = _ID_RE.search(raw)
        err = FhirParseError(
            where,
            f"invalid JSON: {exc}",
            rtype.group(1).decode() if rtype else None,
            rid.group(1).decode() if rid else None,
        )
        yield ReadItem(None, where, err)
        return
    yield from _items_from_object(obj, where)


def _items_from_object(obj: object, where: str) -> Iterator[ReadItem]:
    if not isinstance(obj, dict):
        yield ReadItem(None, where, _error(where, f"not a JSON object: {type(obj).__name__}"))
        return
    rtype = obj.get("resourceType")
    rid = obj.get("id") if isinstance(obj.get("id"), str) else None
    if not isinstance(rtype, str) or not rtype:
        yield ReadItem(None, where, FhirParseError(where, "no resourceType", None, rid))
        return
    if rtype not in R4_TYPES:
        err = FhirParseError(where, f"unknown resourceType {rtype!r}", rtype, rid)
        yield ReadItem(None, where, err)
        return
    if rtype == "Bundle":
        yield from _bundle_entries(obj, where)
        return
    yield ReadItem(obj, where)


def _bundle_entries(bundle: dict[str, Any], where: str) -> Iterator[ReadItem]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        yield ReadItem(None, where, FhirParseError(where, "Bundle.entry is not a list", "Bundle"))
        return
    aliases = _uuid_aliases(entries)
    for i, entry in enumerate(entries):
        at = f"{where}:entry[{i}]"
        if not isinstance(entry, dict):
            yield ReadItem(None, at, _error(at, "Bundle entry is not an object"))
            continue
        resource = entry.get("resource")
        if resource is None:  # e.g. a DELETE request or a response without a body
            continue
        full_url = entry.get("fullUrl")
        if (
            isinstance(resource, dict)
            and "id" not in resource
            and isinstance(full_url, str)
            and full_url.startswith("urn:uuid:")
        ):
            resource["id"] = full_url[len("urn:uuid:") :]
        if aliases and isinstance(resource, dict):
            _rewrite_references(resource, aliases)
        yield from _items_from_object(resource, at)


def _uuid_aliases(entries: list[Any]) -> dict[str, str]:
    """``urn:uuid:Y`` → ``Type/X`` for entries whose ``id`` X differs from their fullUrl uuid Y
    (rare: Synthea uses the same value); references to Y are then rewritten to ``Type/X``."""
    aliases = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        full_url, res = entry.get("fullUrl"), entry["resource"]
        rid, rtype = res.get("id"), res.get("resourceType")
        if (
            isinstance(full_url, str)
            and full_url.startswith("urn:uuid:")
            and isinstance(rid, str)
            and isinstance(rtype, str)
            and full_url[len("urn:uuid:") :] != rid
        ):
            aliases[full_url] = f"{rtype}/{rid}"
    return aliases


def _rewrite_references(node: Any, aliases: dict[str, str]) -> None:
    # Iterative: a resource may nest up to 1,024 levels, beyond Python's recursion limit.
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and ref in aliases:
                item["reference"] = aliases[ref]
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


def _error(where: str, what: str) -> FhirParseError:
    return FhirParseError(where, what)


def _outcome_text(outcome: dict[str, Any]) -> str:
    issues = outcome.get("issue")
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        first = issues[0]
        details = first.get("details")
        text = details.get("text") if isinstance(details, dict) else None
        return str(first.get("diagnostics") or text or first.get("code") or "")
    return ""
