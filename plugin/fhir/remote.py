"""Download live data for a scan: per patient (``--patient``) or a Bulk export (population).

Used by ``dxsafety scan http(s)://...`` and ``dxsafety fetch``. The command-line options
are added by :func:`add_remote_arguments`; :func:`download` writes Bulk-layout NDJSON
(``<Type>.ndjson``) to a directory that :func:`plugin.fhir.read.iter_resources` reads.

Secrets: the bearer token comes from ``--token-file`` or ``DXSAFETY_FHIR_BEARER_TOKEN``;
the SMART private key from ``--private-key`` or ``DXSAFETY_FHIR_PRIVATE_KEY_FILE``. No
option takes a secret on the command line (it would show in ``ps`` and shell history).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from plugin.config import Settings
from plugin.errors import ExitCode, FatalError, FhirAuthError, FhirError, TemporaryFhirError
from plugin.fhir import resource_types
from plugin.fhir.auth import DEFAULT_SCOPE, BearerAuth, NoAuth, SmartBackendAuth
from plugin.fhir.bulk import BulkExporter, ExportProgress
from plugin.fhir.client import FhirClient
from plugin.fhir.http import Auth

log = logging.getLogger(__name__)

BULK_TYPES: tuple[str, ...] = resource_types.bulk_types()  # a Bulk export's default _type


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for reading from a FHIR server (shared by ``scan`` and ``fetch``)."""
    g = parser.add_argument_group("FHIR server (when the source is an http(s):// URL)")
    g.add_argument(
        "--patient",
        action="append",
        default=[],
        metavar="ID",
        help="fetch only this patient (repeatable); without it, a Bulk $export",
    )
    g.add_argument(
        "--since",
        metavar="DATE",
        type=parse_since,
        help="per patient: only events on or after DATE (YYYY-MM-DD; conditions are always "
        "read in full). Bulk export: only resources changed since DATE (_since), or 'auto' "
        "to continue from the previous export into the same output directory",
    )
    g.add_argument(
        "--until",
        metavar="DATE",
        type=parse_since,
        help="per patient: only events on or before DATE (YYYY-MM-DD)",
    )
    g.add_argument(
        "--auth",
        choices=("none", "bearer", "smart"),
        default=None,
        help="none, a static bearer token, or SMART Backend Services "
        "(default: smart if a client id is set, bearer if a token is, else none)",
    )
    g.add_argument("--token-file", type=Path, metavar="FILE", help="file with a bearer token")
    g.add_argument("--client-id", help="SMART client id (or DXSAFETY_FHIR_CLIENT_ID)")
    g.add_argument(
        "--private-key",
        type=Path,
        metavar="FILE",
        help="PEM private key for SMART (or DXSAFETY_FHIR_PRIVATE_KEY_FILE)",
    )
    g.add_argument("--key-id", help="kid of the registered public key (or DXSAFETY_FHIR_KEY_ID)")
    g.add_argument(
        "--alg", choices=("RS384", "ES384"), help="signing algorithm (default: from the key type)"
    )
    g.add_argument("--scope", default=DEFAULT_SCOPE, help=f"SMART scope (default {DEFAULT_SCOPE})")
    g.add_argument(
        "--export-level",
        choices=("system", "patient", "group"),
        default="system",
        help="Bulk export level (default system)",
    )
    g.add_argument("--group", metavar="ID", help="Group id for --export-level group")
    g.add_argument(
        "--allow-partial",
        action="store_true",
        help="Bulk export: keep a file shorter than the manifest's count and go on (default: "
        "the fetch fails, so a truncated download never passes for a complete one)",
    )
    g.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="Bulk export only this resource type (repeatable; default: the types dxsafety reads)",
    )


def build_auth(base_url: str, args: argparse.Namespace, settings: Settings) -> Auth:
    """The auth the options (or settings) ask for. Raises :class:`FhirAuthError`."""
    client_id = args.client_id or settings.fhir_client_id
    key_file = args.private_key or settings.fhir_private_key_file
    mode = args.auth or (
        "smart"
        if client_id
        else "bearer"
        if args.token_file or settings.fhir_bearer_token
        else "none"
    )
    if mode == "none":
        return NoAuth()
    if mode == "bearer":
        if args.token_file:
            return BearerAuth.from_file(args.token_file)
        if settings.fhir_bearer_token:
            return BearerAuth(settings.fhir_bearer_token)
        raise FhirAuthError("--auth bearer needs --token-file or DXSAFETY_FHIR_BEARER_TOKEN")
    if not client_id or not key_file:
        raise FhirAuthError(
            "--auth smart needs --client-id and --private-key "
            "(or DXSAFETY_FHIR_CLIENT_ID and DXSAFETY_FHIR_PRIVATE_KEY_FILE)"
        )
    return SmartBackendAuth.from_files(
        base_url,
        client_id=client_id,
        private_key_file=Path(key_file),
        key_id=args.key_id or settings.fhir_key_id,
        alg=args.alg,
        scope=args.scope,
    )


def cli_error(exc: FhirError) -> FatalError:
    """The CLI exit for a FHIR error: ``raise cli_error(exc) from None`` in a command."""
    if isinstance(exc, FhirAuthError):
        return FatalError(str(exc), ExitCode.FHIR_AUTH)
    if isinstance(exc, TemporaryFhirError):
        return FatalError(f"{exc} (temporary: try again later)", ExitCode.FHIR_TEMPORARY)
    return FatalError(str(exc), ExitCode.FHIR_FATAL)


def parse_since(value: str) -> date | datetime | str:
    """``--since``: a date, a date-time, or ``auto`` (Bulk exports only)."""
    if value == "auto":
        return value
    try:
        return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not YYYY-MM-DD, an ISO date-time or 'auto'"
        ) from None


def since_instant(value: date | datetime | str | None) -> str | None:
    """``_since`` for Bulk export: a FHIR instant (dates are midnight UTC)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def download(
    url: str, args: argparse.Namespace, out_dir: Path, settings: Settings | None = None
) -> Path:
    """Fetch from the FHIR server at ``url`` into ``out_dir`` (Bulk NDJSON layout)."""
    settings = settings or Settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    auth = build_auth(url, args, settings)
    with FhirClient(
        url,
        auth=auth,
        timeout=settings.fhir_timeout_s,
        max_connections=settings.fhir_max_connections,
    ) as client:
        if args.patient:
            if args.since == "auto" or args.until == "auto":
                raise FatalError("--since auto is for Bulk exports, not --patient", ExitCode.USAGE)
            fetch_patients(
                client, list(dict.fromkeys(args.patient)), args.since, out_dir, until=args.until
            )
        else:
            if args.until is not None:
                raise FatalError("--until works with --patient only", ExitCode.USAGE)
            with _progress() as bar:
                task = bar.add_task("Bulk export", total=None)

                def report(p: ExportProgress) -> None:
                    bar.update(
                        task,
                        description=f"Bulk export: {p.phase} {p.message}".strip(),
                        completed=p.done,
                        total=p.total or None,
                    )

                exporter = BulkExporter(
                    client, progress=report, allow_partial=getattr(args, "allow_partial", False)
                )
                exporter.export(
                    out_dir,
                    level=args.export_level,
                    group_id=args.group,
                    types=args.types or BULK_TYPES,
                    since=since_instant(args.since),
                )
    return out_dir


def fetch_patients(
    client: FhirClient,
    patient_ids: list[str],
    since: date | datetime | None,
    out_dir: Path,
    *,
    until: date | datetime | None = None,
) -> dict[str, int]:
    """Fetch each patient (a few at a time) and write ``<Type>.ndjson``; return counts."""
    counts: dict[str, int] = {}
    files: dict[str, Any] = {}
    client.capabilities  # noqa: B018 - read /metadata once, before the workers start
    try:
        with _progress() as bar, ThreadPoolExecutor(client.http.max_connections) as pool:
            task = bar.add_task("Fetching patients", total=len(patient_ids))
            # map() keeps the patients' order, so the files are the same run after run
            fetched = pool.map(lambda pid: client.fetch_patient(pid, since, until), patient_ids)
            for resources in fetched:
                for res in resources:
                    rtype = res["resourceType"]
                    if rtype not in files:
                        files[rtype] = (out_dir / f"{rtype}.ndjson").open("w", encoding="utf-8")
                    files[rtype].write(json.dumps(res, separators=(",", ":")) + "\n")
                    counts[rtype] = counts.get(rtype, 0) + 1
                bar.advance(task)
    finally:
        for f in files.values():
            f.close()
    return counts


@contextmanager
def _progress() -> Iterator[Progress]:
    """A rich progress bar on a terminal (stderr); silent otherwise."""
    console = Console(file=sys.stderr)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        yield bar
