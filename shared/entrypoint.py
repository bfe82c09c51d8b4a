"""``python -m services.<name> [serve|migrate|asyncapi]``: one command line for every service."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from shared.db import migrate
from shared.logging import configure_logging


def main(*, name: str, settings_factory: Callable[[], Any], app_factory: Callable[[Any], FastAPI],
         migrations_dir: Path | None, asyncapi_factory: Callable[[Any], Any]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "asyncapi", "openapi"])
    args = parser.parse_args()
    settings = settings_factory()
    configure_logging(name, settings.log_level)
    if args.command == "migrate" and migrations_dir is None:
        print(f"{name}: no database of its own, nothing to migrate")
    elif args.command == "migrate":
        applied = asyncio.run(migrate(settings.db_url, settings.db_schema, migrations_dir))
        print(f"{name}: {len(applied)} migration(s) applied {applied}")
    elif args.command == "asyncapi":
        sys.stdout.write(asyncapi_factory(settings).to_specification().to_json() + "\n")
    elif args.command == "openapi":
        import json

        sys.stdout.write(json.dumps(app_factory(settings).openapi(), indent=2) + "\n")
    else:
        import uvicorn

        uvicorn.run(app_factory(settings), host=settings.http_host, port=settings.http_port, loop="uvloop",
                    log_config=None, access_log=False, timeout_graceful_shutdown=5)
