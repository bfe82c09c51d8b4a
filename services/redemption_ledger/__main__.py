from services.redemption_ledger.app import MIGRATIONS, NAME, asyncapi, create_app
from services.redemption_ledger.config import Settings
from shared.entrypoint import main

main(name=NAME, settings_factory=Settings, app_factory=create_app, migrations_dir=MIGRATIONS, asyncapi_factory=asyncapi)
