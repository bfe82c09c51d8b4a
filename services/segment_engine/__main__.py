from services.segment_engine.app import MIGRATIONS, NAME, asyncapi, create_app
from services.segment_engine.config import Settings
from shared.entrypoint import main

main(name=NAME, settings_factory=Settings, app_factory=create_app, migrations_dir=MIGRATIONS, asyncapi_factory=asyncapi)
