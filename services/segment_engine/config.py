from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

DEFAULT_SEGMENTS_FILE = Path(__file__).parent / "default_segments.yaml"


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENT_ENGINE_", extra="ignore", populate_by_name=True)

    http_port: int = Field(8083, description="HTTP port of the management API")
    db_schema: str = Field("segment_engine", description="Postgres schema this service owns")
    own_database_url: str | None = Field(
        None, validation_alias=AliasChoices("SEGMENT_ENGINE_DATABASE_URL"),
        description="Postgres URL for this service alone (defaults to DATABASE_URL)",
    )
    consumer_group: str = Field("segment_engine", description="Kafka consumer group")
    sweep_interval_s: float = Field(3600.0, gt=0, description="How often the sweep re-evaluates every segment "
                                                              "as time passes (seconds)")
    sweep_on_start: bool = Field(True, description="Sweep once shortly after start (time passed while down)")
    backfill_chunk_size: int = Field(5000, ge=1, le=100_000,
                                     description="Customers per transaction when a job applies its results")
    job_poll_s: float = Field(2.0, gt=0, description="How often the job runner looks for queued jobs")
    preview_limit: int = Field(100, ge=1, le=1000, description="Default number of customers listed by a preview")
    load_default_segments: bool = Field(True, description="Load the shipped segments on first start "
                                                          "(only if no segment exists; never again after)")
    default_segments_file: Path = Field(DEFAULT_SEGMENTS_FILE, description="YAML file of the default segments")

    @property
    def db_url(self) -> str:
        return self.own_database_url or self.database_url
