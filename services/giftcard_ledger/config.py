from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GIFTCARD_LEDGER_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8081, description="HTTP port of the management API")
    db_schema: str = Field("giftcard_ledger", description="Postgres schema this service owns")
    own_database_url: str | None = Field(
        None, validation_alias=AliasChoices("GIFTCARD_LEDGER_DATABASE_URL"),
        description="Postgres URL for this service alone (defaults to DATABASE_URL)",
    )
    consumer_group: str = Field("giftcard_ledger", description="Kafka consumer group")

    @property
    def db_url(self) -> str:
        return self.own_database_url or self.database_url
