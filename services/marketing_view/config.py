from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETING_VIEW_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8084, description="HTTP port of the read API and the tab page")
    role: Literal["all", "api", "projector"] = Field(
        "all", description="What this process does: 'api' serves the read API and the tab page (no consumer, no "
                           "rebuild), 'projector' runs the live projection, the loss watchdog and auto-rebuild "
                           "(HTTP: health, readiness and metrics only), 'all' both in one process",
    )
    workers: int = Field(
        1, ge=1, le=16, description="Server processes of the 'api' role on the one port (uvicorn workers); more than "
                                    "one needs SESSION_SECRET (the page's sessions must verify in every process)",
    )
    consumer_group: str = Field("marketing_view", description="Kafka consumer group of the live projection")
    redis_cluster: bool = Field(False, description="REDIS_URL names a node of a Redis Cluster (keys are slot-safe)")
    key_prefix: str = Field("mv", pattern=r"^[A-Za-z0-9_.-]{1,32}$",
                            description="Prefix of every Redis key this service writes")
    invoice_url_template: str = Field(
        "https://pos.example/invoices/{invoice_number}",
        description="Link of an invoice number in the Coupon Usage History grid ({invoice_number} is URL-encoded)",
    )
    auto_rebuild: bool = Field(
        True, description="Rebuild by itself when Redis holds no read model (first start, data loss)"
    )
    watchdog_interval_s: float = Field(1.0, gt=0, le=10, description="How often the loss watchdog looks at Redis")
    rebuild_settle_s: float | None = Field(
        None, ge=0, description="Wait between announcing a rebuild and capturing the end offsets "
                                "(default: 2.5 watchdog intervals + 0.5 s, so every instance dual-writes by then)",
    )
    cleanup_grace_s: float = Field(30.0, ge=0, description="How long an old generation survives a switch")
    expiring_within_days: int = Field(30, ge=1, le=365, description="Window of the 'balance expiring' insight")
    page_size: int = Field(20, ge=1, le=100, description="Coupon history rows per page by default (max 100)")
    session_secret: SecretStr | None = Field(
        None, description="HMAC key of the tab page's session cookie; set it when several instances serve the page "
                          "(default: random per process)",
    )
    session_ttl_s: int = Field(8 * 3600, ge=60, description="Lifetime of a tab page session")

    @field_validator("invoice_url_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{invoice_number}" not in value or not value.startswith(("https://", "http://", "/")):
            raise ValueError("invoice_url_template must be an http(s) URL or path containing {invoice_number}")
        return value

    @model_validator(mode="after")
    def _workers_serve_the_api_only(self) -> Settings:
        if self.workers > 1 and self.role != "api":
            raise ValueError("workers > 1 is for the 'api' role only (the projector scales with replicas)")
        if self.workers > 1 and self.session_secret is None:
            raise ValueError("workers > 1 needs session_secret: a page session must verify in every worker")
        return self

    @property
    def serves_api(self) -> bool:
        return self.role in ("all", "api")

    @property
    def projects(self) -> bool:
        return self.role in ("all", "projector")

    @property
    def settle_s(self) -> float:
        return self.rebuild_settle_s if self.rebuild_settle_s is not None else 2.5 * self.watchdog_interval_s + 0.5
