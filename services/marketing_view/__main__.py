from services.marketing_view.app import NAME, asyncapi, create_app
from services.marketing_view.config import Settings
from shared.entrypoint import main

main(name=NAME, settings_factory=Settings, app_factory=create_app, migrations_dir=None, asyncapi_factory=asyncapi)
