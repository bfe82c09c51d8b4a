"""Wiring of giftcard_ledger: Kafka subscribers, HTTP routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.giftcard_ledger.config import Settings
from shared.http import create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "giftcard_ledger"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(name=NAME, settings=settings, schema=settings.db_schema,
                                     database_url=settings.db_url, migrations_dir=MIGRATIONS)
        add_runtime_checks(app, runtime)
        try:
            yield
        finally:
            await runtime.close()

    return create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="giftcard_ledger",
        description="Gift cards on an append-only ledger.",
    )


def asyncapi(settings: Settings) -> AsyncAPI:
    """The Kafka side of the service, for the generated AsyncAPI document."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    return AsyncAPI(broker, title="giftcard_ledger", version="1.0.0")
