"""``dxsafety fetch URL --out DIR``: save live FHIR data as Bulk-layout NDJSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plugin.errors import ExitCode, FatalError, FhirError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from plugin.fhir.remote import add_remote_arguments

    p = sub.add_parser(
        "fetch",
        help="download from a FHIR server to NDJSON (Bulk $export, or --patient ID ...)",
        description="Download from a FHIR R4 server into DIR as <Type>.ndjson files, which "
        "`dxsafety scan DIR` reads. Without --patient this runs a Bulk Data $export; an "
        "interrupted export resumes when run again with the same options and DIR.",
    )
    p.add_argument("url", help="FHIR base URL, e.g. https://ehr.example.org/fhir")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    add_remote_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plugin.fhir.remote import cli_error, download

    if not args.url.startswith(("http://", "https://")):
        raise FatalError(f"{args.url}: not an http(s):// URL", ExitCode.USAGE)
    try:
        out = download(args.url, args, args.out)
    except FhirError as exc:
        raise cli_error(exc) from None
    files = sorted(p.name for p in out.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
    print(f"wrote {len(files)} file(s) to {out}: {', '.join(files)}", file=sys.stderr)
    return 0
