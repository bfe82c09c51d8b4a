"""``python -m services.marketing_view [serve|migrate|asyncapi|openapi|rebuild]``."""

import sys

from services.marketing_view.app import NAME, asyncapi, create_app, serve_workers
from services.marketing_view.config import Settings
from shared.entrypoint import main

if len(sys.argv) > 1 and sys.argv[1] == "rebuild":
    from services.marketing_view.cli import rebuild_command

    sys.exit(rebuild_command(sys.argv[2:]))
if len(sys.argv) == 1 or sys.argv[1] == "serve":
    settings = Settings()
    if settings.workers > 1:  # the api role on several processes (MARKETING_VIEW_WORKERS)
        sys.exit(serve_workers(settings))
main(name=NAME, settings_factory=Settings, app_factory=create_app, migrations_dir=None, asyncapi_factory=asyncapi)
