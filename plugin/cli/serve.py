"""``dxsafety serve``: the CDS Hooks service and the review worklist, under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from plugin.cli.ruleargs import add_rules_arguments, rules_invalid
from plugin.errors import ExitCode, ModelError, RuleValidationError, SettingsError, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve CDS Hooks (/cds-services) and the worklist")
    p.add_argument("--host", default=None, help="interface (default DXSAFETY_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default DXSAFETY_PORT or 8000)")
    p.add_argument("--model", type=Path, default=None, help="ranker model directory")
    add_rules_arguments(p)
    p.add_argument(
        "--database-url", default=None, help="worklist database (default DXSAFETY_DATABASE_URL)"
    )
    p.add_argument(
        "--public-base-url",
        default=None,
        help="URL clients use to reach us: the JWT aud and card links (DXSAFETY_PUBLIC_BASE_URL)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (CPU-bound calls scale with cores; each loads rules and model)",
    )
    p.set_defaults(handler=run)


def _rules_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--rules``/``--no-catalogue`` as settings: ``site_rules`` load after ``rules_dir``."""
    if not args.no_catalogue:
        return {"site_rules": args.rules} if args.rules else {}
    if not args.rules:
        fatal("--no-catalogue needs at least one --rules directory", ExitCode.USAGE)
    return {"rules_dir": args.rules[0], "site_rules": args.rules[1:]}


def _env(value: Any) -> str:
    """A setting as its DXSAFETY_* variable (a list of paths is os.pathsep-separated)."""
    return os.pathsep.join(map(str, value)) if isinstance(value, list) else str(value)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from plugin.app import UNSIGNED_WARNING, create_app, freeze_heap
    from plugin.config import Settings

    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("model_dir", args.model),
            ("database_url", args.database_url),
            ("public_base_url", args.public_base_url),
        )
        if v is not None
    }
    overrides.update(_rules_settings(args))
    settings = Settings(**overrides)
    if "public_base_url" not in settings.model_fields_set:  # local use: follow --host/--port
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        settings = settings.model_copy(update={"public_base_url": f"http://{host}:{settings.port}"})
        overrides["public_base_url"] = settings.public_base_url
    if settings.cds_unsigned_dev_mode:
        banner = "!" * 78
        print(f"{banner}\n!! {UNSIGNED_WARNING}\n{banner}", file=sys.stderr)
    try:
        app = create_app(settings)
    except SettingsError as exc:
        fatal(str(exc), ExitCode.SETTINGS_INVALID)
    except RuleValidationError as exc:
        rules_invalid(exc, settings.rule_roots())
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    freeze_heap()
    logging.getLogger("plugin").setLevel(logging.INFO)
    print(
        f"dxsafety: CDS Hooks discovery at {settings.public_base_url}/cds-services, "
        f"worklist at {settings.public_base_url}/worklist (listening on "
        f"{settings.host}:{settings.port})",
        file=sys.stderr,
    )
    # access_log off: URLs are harmless but the habit of logging requests is not
    options: dict[str, Any] = dict(host=settings.host, port=settings.port, access_log=False,
                                   proxy_headers=True, server_header=False)  # fmt: skip
    if args.workers > 1:  # each worker builds its own app from the same settings
        os.environ.update({f"DXSAFETY_{k.upper()}": _env(v) for k, v in overrides.items()})
        uvicorn.run("plugin.app:app_from_env", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(app, **options)
    return 0
