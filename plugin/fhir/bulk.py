"""FHIR Bulk Data ``$export`` into a directory of NDJSON files.

Flow (hl7.org/fhir/uv/bulkdata/export.html): kick off ``[base]/$export``,
``[base]/Patient/$export`` or ``[base]/Group/{id}/$export`` with ``Prefer: respond-async``;
poll the status URL (``Content-Location``) honouring ``Retry-After`` and reporting
``X-Progress`` to a callback; download every output file (with the access token when the
manifest says ``requiresAccessToken``); then DELETE the job.

The output directory is what :func:`plugin.fhir.read.iter_resources` reads:
``<Type>.ndjson`` (``<Type>.<n>.ndjson`` when the server splits a type; ``.ndjson.gz``
when it sends gzip, kept compressed). Two hidden files keep state between runs:

* ``.dxsafety-export.job``  -- the job in progress: its status URL, the manifest and the
  files already complete. A run interrupted while waiting or downloading resumes the same
  job: complete files are skipped, a partial one resumes with ``Range`` (or downloads
  again when the server ignores ``Range``); files appear under their name only when
  complete (temp file + rename).
* ``.dxsafety-export.state`` -- the ``transactionTime`` of the last complete export (used
  as ``_since`` by ``since="auto"``) and the data files it left.

An incremental run (a ``since`` into a directory that holds an earlier export) keeps the
directory a current mirror: the changed resources are downloaded aside, removed from the
older files, and added as ``<Type>.<transactionTime>.ndjson``, so every resource appears
once, in its newest version. (``_since`` does not report deletions; a full export does.)
A full export into the same directory replaces the files of the previous one.

Server problems in the export (the manifest's ``error`` files) are saved to
``export-errors.log`` (not ``.ndjson``, so readers do not take them for data).

A file with fewer lines than the manifest's ``count`` (a truncated download, a proxy that cut
the body) fails the export with :class:`~plugin.errors.IncompleteExport`: the file is renamed
``<name>.incomplete`` (kept for inspection, never read as data) and a re-run downloads it again.
With ``allow_partial=True`` it is kept, logged and listed in ``ExportResult.partial``.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests

from plugin.errors import (
    FatalFhirError,
    FhirDeadlineError,
    IncompleteExport,
    TemporaryFhirError,
)
from plugin.fhir.bulk_files import (
    count_lines,
    download_file,
    is_gzip,
    merge_incremental,
    read_json,
    write_json,
)
from plugin.fhir.client import FhirClient
from plugin.fhir.http import parse_json_object, parse_retry_after, safe_url

log = logging.getLogger(__name__)

JOB_FILE = ".dxsafety-export.job"
INCOMING_DIR = ".dxsafety-export.incoming"  # an incremental run's files before the merge
STATE_FILE = ".dxsafety-export.state"
ERRORS_FILE = "export-errors.log"
DEFAULT_POLL_S = 5.0  # when the server sends no Retry-After
MAX_POLL_S = 120.0
DEFAULT_EXPORT_BUDGET_S = 6 * 3600.0  # a whole-hospital export can take hours

Level = Literal["system", "patient", "group"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportProgress:
    """Passed to the progress callback: what the export is doing now."""

    phase: Literal["kickoff", "waiting", "downloading", "done"]
    message: str = ""
    done: int = 0  # files downloaded so far
    total: int = 0  # files to download


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResult:
    out_dir: Path
    transaction_time: str
    files: tuple[Path, ...]
    counts: Mapping[str, int]  # resources (NDJSON lines) per type
    error_count: int  # OperationOutcome lines the server reported
    resumed: bool  # an interrupted job was picked up again
    # files shorter than the manifest's count, kept because allow_partial was set:
    # "name: N of M resources"
    partial: tuple[str, ...] = ()


class BulkExporter:
    """Runs one ``$export`` with a :class:`FhirClient`'s connection, auth and retries."""

    def __init__(
        self,
        client: FhirClient,
        *,
        progress: Callable[[ExportProgress], None] | None = None,
        budget_s: float = DEFAULT_EXPORT_BUDGET_S,
        poll_s: float = DEFAULT_POLL_S,
        allow_partial: bool = False,
    ) -> None:
        self.client = client
        self.allow_partial = allow_partial
        self.partial: list[str] = []
        self.http = client.http
        self.progress = progress or (lambda _p: None)
        self.budget_s = budget_s
        self.poll_s = poll_s

    def export(
        self,
        out_dir: Path,
        *,
        level: Level = "system",
        group_id: str | None = None,
        types: Sequence[str] = (),
        since: str | None = None,
    ) -> ExportResult:
        """Export into ``out_dir``. ``since="auto"`` continues from the last export there."""
        out_dir.mkdir(parents=True, exist_ok=True)
        if since == "auto":
            since = read_json(out_dir / STATE_FILE).get("transactionTime")
        request_url = self._kickoff_url(level, group_id, types, since)
        previous = read_json(out_dir / STATE_FILE)
        incremental = bool(since) and bool(previous.get("files"))
        dest = out_dir / INCOMING_DIR if incremental else out_dir
        dest.mkdir(exist_ok=True)
        job = read_json(out_dir / JOB_FILE)
        resumed = job.get("request") == request_url and bool(job.get("status"))
        if not resumed:
            job = {"request": request_url, "status": self._kickoff(request_url), "done": {}}
            write_json(out_dir / JOB_FILE, job)
        try:
            manifest = job.get("manifest")
            if manifest is None:
                manifest = job["manifest"] = self._wait(job["status"])
                write_json(out_dir / JOB_FILE, job)
            files, counts = self._download_all(dest, job, out_dir / JOB_FILE)
        except FatalFhirError as exc:
            if not resumed or exc.status not in (404, 410):
                raise
            log.warning("the saved export job or its files are gone; starting a new export")
            (out_dir / JOB_FILE).unlink()
            return self.export(out_dir, level=level, group_id=group_id, types=types, since=since)
        error_count = self._download_errors(out_dir, manifest)
        self._delete_job(job["status"])
        transaction_time = str(manifest.get("transactionTime", ""))
        if incremental:
            files = merge_incremental(out_dir, dest, files, transaction_time)
            kept = {n for n in previous["files"] if (out_dir / n).is_file()}
        else:
            kept = set()
            for stale in set(previous.get("files") or []) - {f.name for f in files}:
                (out_dir / Path(stale).name).unlink(missing_ok=True)
        state = {
            "transactionTime": transaction_time,
            "request": request_url,
            "files": sorted(kept | {f.name for f in files}),
        }
        write_json(out_dir / STATE_FILE, state)
        (out_dir / JOB_FILE).unlink(missing_ok=True)
        self.progress(ExportProgress(phase="done", done=len(files), total=len(files)))
        return ExportResult(
            out_dir=out_dir,
            transaction_time=transaction_time,
            files=tuple(files),
            counts=dict(counts),
            error_count=error_count,
            resumed=resumed,
            partial=tuple(sorted(self.partial)),
        )

    # --- kick-off and polling ---------------------------------------------------------------
    def _kickoff_url(
        self, level: Level, group_id: str | None, types: Sequence[str], since: str | None
    ) -> str:
        if level == "group" and not group_id:
            raise FatalFhirError("a Group-level export needs a group id")
        path = {
            "system": "$export",
            "patient": "Patient/$export",
            "group": f"Group/{group_id}/$export",
        }[level]
        params = [("_outputFormat", "application/fhir+ndjson")]
        if types:
            params.append(("_type", ",".join(types)))
        if since:
            params.append(("_since", since))
        prepared = requests.Request("GET", self.client.url(path), params=params).prepare()
        return prepared.url or self.client.url(path)

    def _kickoff(self, url: str) -> str:
        self.progress(ExportProgress(phase="kickoff", message="starting the export"))
        resp = self.http.request(
            "GET", url, headers={"Prefer": "respond-async", "Accept": "application/fhir+json"}
        )
        status_url = resp.headers.get("Content-Location")
        resp.close()
        if resp.status_code != 202 or not status_url:
            raise FatalFhirError(
                f"{safe_url(url)}: expected 202 Accepted with a Content-Location, got "
                f"HTTP {resp.status_code}",
                status=resp.status_code,
                url=url,
            )
        return status_url

    def _wait(self, status_url: str) -> dict[str, Any]:
        """Poll until the manifest is ready; raise FhirDeadlineError past the budget."""
        deadline = self.http.clock() + self.budget_s
        interval = self.poll_s
        while True:
            resp = self.http.request("GET", status_url, headers={"Accept": "application/json"})
            if resp.status_code == 200:
                manifest = parse_json_object(resp.content, status_url)
                if not isinstance(manifest.get("output"), list):
                    raise FatalFhirError(
                        f"{safe_url(status_url)} answered 200 without an export manifest",
                        url=status_url,
                    )
                return manifest
            message = resp.headers.get("X-Progress", "in progress")
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            resp.close()
            if wait is None:
                wait, interval = interval, min(interval * 1.5, MAX_POLL_S)
            self.progress(ExportProgress(phase="waiting", message=message))
            if self.http.clock() + wait > deadline:
                raise FhirDeadlineError(
                    f"the export at {safe_url(status_url)} was not ready within "
                    f"{self.budget_s:.0f}s; run again to keep waiting for the same job",
                    url=status_url,
                )
            self.http.sleep(wait)

    def _delete_job(self, status_url: str) -> None:
        """Tell the server it may delete the files. Best effort: a refusal is only logged."""
        try:
            self.http.request("DELETE", status_url).close()
        except (FatalFhirError, TemporaryFhirError) as exc:
            log.warning("could not delete the finished export job: %s", exc)

    # --- downloads ----------------------------------------------------------------------------
    def _download_all(
        self, out_dir: Path, job: dict[str, Any], job_file: Path
    ) -> tuple[list[Path], Counter[str]]:
        manifest = job["manifest"]
        token = bool(manifest.get("requiresAccessToken"))
        outputs = [o for o in manifest.get("output") or [] if o.get("url") and o.get("type")]
        per_type = Counter(o["type"] for o in outputs)
        seen: Counter[str] = Counter()
        plan = []
        for out in outputs:
            seen[out["type"]] += 1
            rtype = out["type"]
            stem = rtype if per_type[rtype] == 1 else f"{rtype}.{seen[rtype]}"
            plan.append((out, stem))
        done: dict[str, str] = job["done"]
        lock = threading.Lock()
        counts: Counter[str] = Counter()
        files: list[Path] = []

        def one(out: dict[str, Any], stem: str) -> None:
            name = done.get(out["url"])
            if name is None or not (out_dir / name).is_file():
                name = download_file(self.http, out["url"], out_dir, stem, token=token)
            path = out_dir / name
            lines = count_lines(path)
            expected = out.get("count")
            if isinstance(expected, int) and expected != lines:
                short = f"{name}: the manifest says {expected} resources, the file has {lines}"
                if lines < expected and not self.allow_partial:
                    path.replace(path.with_name(path.name + ".incomplete"))
                    raise IncompleteExport(
                        f"{short}: incomplete download (re-run to fetch it again, or "
                        "--allow-partial to scan what arrived)",
                        url=safe_url(out["url"]),
                    )
                log.warning("%s", short)
                if lines < expected:
                    with lock:
                        self.partial.append(f"{name}: {lines} of {expected} resources")
            with lock:
                done[out["url"]] = name
                write_json(job_file, job)
                counts[out["type"]] += lines
                files.append(path)
                self.progress(
                    ExportProgress(
                        phase="downloading", message=name, done=len(files), total=len(plan)
                    )
                )

        self.progress(ExportProgress(phase="downloading", done=0, total=len(plan)))
        with ThreadPoolExecutor(max_workers=max(1, self.http.max_connections)) as pool:
            for future in [pool.submit(one, out, stem) for out, stem in plan]:
                future.result()
        return sorted(files), counts

    def _download_errors(self, out_dir: Path, manifest: Mapping[str, Any]) -> int:
        lines: list[str] = []
        token = bool(manifest.get("requiresAccessToken"))
        for out in manifest.get("error") or []:
            if not out.get("url"):
                continue
            resp = self.http.request("GET", out["url"], authenticate=token)
            body = resp.content
            if is_gzip(out["url"], resp) and body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            lines += [line for line in body.decode("utf-8", "replace").splitlines() if line]
        if lines:
            (out_dir / ERRORS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
            log.warning(
                "the server reported %d problem(s) with the export; see %s",
                len(lines),
                out_dir / ERRORS_FILE,
            )
        return len(lines)
