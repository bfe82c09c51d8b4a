from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETING_VIEW_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8084, description="HTTP port of the read API and the tab page")
    consumer_group: str = Field("marketing_view", description="Kafka consumer group")
    key_prefix: str = Field("mv", description="Prefix of every Redis key this service writes")
    invoice_url_template: str = Field(
        "https://pos.example/invoices/{invoice_number}",
        description="Link of an invoice number in the Coupon Usage History grid",
    )
