from __future__ import annotations

from decimal import Decimal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.giftcard_ledger.domain import ExpiredRedemptionPolicy
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
    card_hmac_key: SecretStr | None = Field(
        None, description="Secret key of the HMAC under which card numbers are stored (at least 16 bytes). Required.",
    )
    card_hmac_previous_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys used before a rotation, still tried on look-ups (JSON list in the environment)",
    )
    expired_redemption_policy: ExpiredRedemptionPolicy = Field(
        ExpiredRedemptionPolicy.REJECT,
        description="'reject': an expired card can no longer be redeemed, reloaded or refunded to; 'allow': it can",
    )
    max_card_balance: Decimal = Field(Decimal("1000000.00"), gt=0, description="Highest balance a card may hold")
    sweep_interval_s: float = Field(3600.0, gt=0, description="Seconds between two expiry sweeps")
    idempotency_retention_days: int = Field(
        30, ge=1, description="Idempotency keys older than this are forgotten (by the sweep)",
    )
    db_pool_size: int = Field(10, ge=2, description="Postgres connections of this process")

    @property
    def db_url(self) -> str:
        return self.own_database_url or self.database_url
