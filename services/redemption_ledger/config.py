from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="REDEMPTION_LEDGER_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8082, description="HTTP port of the management API")
    db_schema: str = Field("redemption_ledger", description="Postgres schema this service owns")
    own_database_url: str | None = Field(
        None, validation_alias=AliasChoices("REDEMPTION_LEDGER_DATABASE_URL"),
        description="Postgres URL for this service alone (defaults to DATABASE_URL)",
    )
    consumer_group: str = Field("redemption_ledger", description="Kafka consumer group")
    coupon_insights_window_days: int = Field(
        365, ge=1, le=3660, description="Price sensitivity: the window of purchases considered, in days"
    )
    coupon_only_threshold: Decimal = Field(
        Decimal("0.8"), gt=0, le=1,
        description="Price sensitivity: share of purchases with a coupon from which a customer is coupon-only",
    )
    coupon_only_min_purchases: int = Field(
        3, ge=1, description="Price sensitivity: purchases in the window before anyone is called coupon-only"
    )
    insights_sweep_interval_s: float = Field(
        3600, ge=0, description="How often purchases that left the window are re-evaluated (0: never)"
    )
    page_size_max: int = Field(200, ge=1, le=1000, description="Largest page any list endpoint returns")

    @property
    def db_url(self) -> str:
        return self.own_database_url or self.database_url

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)
