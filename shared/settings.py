"""Settings every service reads from the environment (12-factor); each service adds its own with a prefix.

The names without a prefix are the ones ``make up`` writes to ``.local/stack.env`` (SPEC §7).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated",
    )
    kafka_topic_prefix: str = Field(
        "", validation_alias=AliasChoices("KAFKA_TOPIC_PREFIX"),
        description="Prefix put before every topic name (isolates tenants or test runs on one cluster)",
    )
    database_url: str = Field(
        "postgresql://marketing@127.0.0.1:15432/marketing", validation_alias=AliasChoices("DATABASE_URL"),
        description="Postgres URL; each service keeps its tables in its own schema",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0", validation_alias=AliasChoices("REDIS_URL"), description="Redis URL"
    )
    marketing_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MARKETING_API_KEY"),
        description="A key with every scope (the local stack's dev key). Leave unset in production.",
    )
    api_keys: str = Field(
        "", validation_alias=AliasChoices("MARKETING_API_KEYS"),
        description="Hashed API keys: 'sha256:<hex>=read,manage;sha256:<hex>=read' (never the keys themselves)",
    )
    api_keys_file: Path | None = Field(
        None, validation_alias=AliasChoices("MARKETING_API_KEYS_FILE"),
        description="A file with one 'sha256:<hex>=scopes' entry per line (e.g. a mounted Secret)",
    )
    business_timezone: str = Field(
        "America/New_York", validation_alias=AliasChoices("BUSINESS_TIMEZONE"),
        description="Time zone of the retailer's business days (windows, dates shown)",
    )
    rate_limit_per_s: float = Field(
        50, gt=0, validation_alias=AliasChoices("MARKETING_RATE_LIMIT_PER_S"),
        description="Requests per second per API key on the read API and the card look-ups (429 past it)",
    )
    rate_limit_burst: int = Field(
        100, gt=0, validation_alias=AliasChoices("MARKETING_RATE_LIMIT_BURST"),
        description="Requests a key may send at once before the per-second rate applies",
    )
    fault_pause_before_commit_s: float = Field(
        0, ge=0, le=5, validation_alias=AliasChoices("MARKETING_FAULT_PAUSE_BEFORE_COMMIT_S"),
        description="Testing only: pause between the database commit and the offset commit, widening the window "
        "that the crash tests aim their kill -9 at. Keep 0 in production",
    )
    log_level: str = Field(
        "INFO", validation_alias=AliasChoices("LOG_LEVEL"), description="DEBUG, INFO, WARNING, ERROR"
    )
    http_host: str = Field(
        "127.0.0.1", validation_alias=AliasChoices("HTTP_HOST"),
        description="Address the HTTP server binds (0.0.0.0 in containers)",
    )

    def topic(self, name: str) -> str:
        """The physical topic of a logical topic name."""
        return self.kafka_topic_prefix + name


def env_names(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Every environment variable a settings class reads -> the field it sets (for docs and deploy checks)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, info in settings_cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                names[str(choice).upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        else:
            names[(prefix + field_name).upper()] = field_name
    return names
