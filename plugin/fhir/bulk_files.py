"""File work for :mod:`plugin.fhir.bulk`: resumable downloads, NDJSON (plain or gzip)
lines, the incremental merge, atomic JSON state files."""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from plugin.errors import FatalFhirError, TemporaryFhirError
from plugin.fhir.http import FhirHttp, safe_url

GZIP_TYPES = ("application/gzip", "application/x-gzip")
CHUNK = 1 << 16

log = logging.getLogger(__name__)


def download_file(http: FhirHttp, url: str, out_dir: Path, stem: str, *, token: bool) -> str:
    """Download one output file; return its final name. Resumes a ``.part`` file."""
    part = out_dir / f".{stem}.part"
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        # gzip is the only transfer coding we accept: it is saved as sent (.ndjson.gz)
        headers = {"Accept": "application/fhir+ndjson", "Accept-Encoding": "gzip"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = http.request("GET", url, headers=headers, stream=True, authenticate=token)
        except FatalFhirError as exc:
            if offset and exc.status == 416:  # our partial file is not a prefix: restart
                part.unlink()
                continue
            raise
        gz = is_gzip(url, resp)
        append = offset > 0 and resp.status_code == 206
        try:
            with part.open("ab" if append else "wb") as f:
                for chunk in resp.raw.stream(CHUNK, decode_content=False):
                    f.write(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            resp.close()
            if attempt >= len(http.retry_delays):
                raise TemporaryFhirError(
                    f"GET {safe_url(url)}: the download kept failing ({exc})", url=url
                ) from None
            log.warning("download of %s interrupted (%s); resuming", stem, type(exc).__name__)
            http.sleep(http.retry_delays[attempt])
            attempt += 1
            continue
        resp.close()
        name = f"{stem}.ndjson.gz" if gz else f"{stem}.ndjson"
        part.replace(out_dir / name)
        return name


def merge_incremental(
    out_dir: Path, incoming_dir: Path, incoming: list[Path], transaction_time: str
) -> list[Path]:
    """Move an incremental run's files into ``out_dir``, dropping older copies of them."""
    stamp = "".join(ch for ch in transaction_time if ch.isalnum()) or "since"
    merged = []
    for new in incoming:
        rtype, suffix = (
            new.name.split(".")[0],
            ".ndjson.gz" if new.name.endswith(".gz") else ".ndjson",
        )
        changed = {resource_id(line) for line in ndjson_lines(new)}
        for old in out_dir.glob(f"{rtype}.*"):
            if old.is_file() and old.name.endswith((".ndjson", ".ndjson.gz")):
                rewrite_without(old, changed)
        n, dest = 1, out_dir / f"{rtype}.{stamp}{suffix}"
        while dest.exists():
            n += 1
            dest = out_dir / f"{rtype}.{stamp}-{n}{suffix}"
        new.replace(dest)
        merged.append(dest)
    incoming_dir.rmdir()
    return sorted(merged)


def resource_id(line: bytes) -> str:
    try:
        value = json.loads(line)
    except ValueError:
        return ""
    return str(value.get("id", "")) if isinstance(value, dict) else ""


def ndjson_lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        return [line for line in f if line.strip()]


def rewrite_without(path: Path, ids: set[str]) -> None:
    lines = ndjson_lines(path)
    kept = [line for line in lines if resource_id(line) not in ids]
    if len(kept) == len(lines):
        return
    tmp = path.with_name(f".{path.name}.tmp")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(tmp, "wb") as f:
        for line in kept:
            f.write(line if line.endswith(b"\n") else line + b"\n")
    tmp.replace(path)


def is_gzip(url: str, resp: requests.Response) -> bool:
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return (
        resp.headers.get("Content-Encoding", "").lower() == "gzip"
        or ctype in GZIP_TYPES
        or urlsplit(url).path.endswith(".gz")
    )


def count_lines(path: Path) -> int:
    return len(ndjson_lines(path))


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + f".{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    tmp.replace(path)
