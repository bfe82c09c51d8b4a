from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENT_ENGINE_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8083, description="HTTP port of the management API")
    db_schema: str = Field("segment_engine", description="Postgres schema this service owns")
    own_database_url: str | None = Field(
        None, validation_alias=AliasChoices("SEGMENT_ENGINE_DATABASE_URL"),
        description="Postgres URL for this service alone (defaults to DATABASE_URL)",
    )
    consumer_group: str = Field("segment_engine", description="Kafka consumer group")

    @property
    def db_url(self) -> str:
        return self.own_database_url or self.database_url
