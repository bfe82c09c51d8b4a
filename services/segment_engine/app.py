"""Wiring of segment_engine: Kafka subscribers, HTTP routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.segment_engine.config import Settings
from services.segment_engine.handlers import SegmentEngine
from shared.contracts import topics
from shared.contracts.domain import CustomerSegmentsChanged
from shared.contracts.pos import CustomerEvent
from shared.http import create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "segment_engine"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(name=NAME, settings=settings, schema=settings.db_schema,
                                     database_url=settings.db_url, migrations_dir=MIGRATIONS)
        assert runtime.pool is not None and runtime.relay is not None
        engine = SegmentEngine(runtime.pool, runtime.relay.wake)
        app.state.engine = engine
        add_runtime_checks(app, runtime)
        await runtime.start_consumer({topics.CRM_CUSTOMERS: engine.on_customer_events},
                                     group_id=settings.consumer_group)
        try:
            yield
        finally:
            await runtime.close()

    return create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="segment_engine",
        description="Customer segments: rules, evaluation, manual assignment, membership history.",
    )


def asyncapi(settings: Settings) -> AsyncAPI:
    """The Kafka side of the service, for the generated AsyncAPI document."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.CRM_CUSTOMERS, group_id=settings.consumer_group, title="on_customer_event",
                       description="Registrations and loyalty tier changes from the CRM")
    async def on_customer_event(event: CustomerEvent) -> None: ...

    broker.publisher(topics.SEGMENT_MEMBERSHIPS, schema=CustomerSegmentsChanged, title="to_segment_memberships",
                     description="A customer's complete, current segment list (key: customer_id)")
    return AsyncAPI(broker, title="segment_engine", version="1.0.0")
