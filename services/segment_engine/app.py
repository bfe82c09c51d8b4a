"""Wiring of segment_engine: Kafka subscribers, HTTP routes, background jobs, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.segment_engine import store
from services.segment_engine.api import build_router
from services.segment_engine.config import Settings
from services.segment_engine.handlers import SegmentEngine
from services.segment_engine.jobs import JobRunner
from shared.clock import Clock, SystemClock
from shared.contracts import topics
from shared.contracts.domain import CustomerSegmentsChanged
from shared.contracts.pos import CustomerEvent, SaleEvent
from shared.http import create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "segment_engine"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    """The service. ``clock`` is the time source of every evaluation (tests pass a ``FixedClock``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(name=NAME, settings=settings, schema=settings.db_schema,
                                     database_url=settings.db_url, migrations_dir=MIGRATIONS)
        assert runtime.pool is not None and runtime.relay is not None
        engine = SegmentEngine(runtime.pool, runtime.relay.wake, timezone=settings.business_timezone,
                               clock=clock or SystemClock(), preview_limit=settings.preview_limit)
        runner = JobRunner(engine, chunk_size=settings.backfill_chunk_size, poll_s=settings.job_poll_s)
        app.state.engine = engine
        app.state.jobs = runner
        add_runtime_checks(app, runtime)
        try:
            async with runtime.pool.acquire() as conn:
                await store.fill_missing_signup_days(conn, settings.business_timezone)
            if settings.load_default_segments:
                await engine.load_defaults(settings.default_segments_file)
            runtime.spawn(runner.run_forever(), "segment-jobs")
            runtime.spawn(runner.schedule_sweeps(settings.sweep_interval_s,
                                                 first_after_s=1.0 if settings.sweep_on_start
                                                 else settings.sweep_interval_s), "segment-sweeps")
            await runtime.start_consumer({topics.POS_SALES: engine.on_sale_events,
                                          topics.CRM_CUSTOMERS: engine.on_customer_events},
                                         group_id=settings.consumer_group)
            yield
        finally:
            await runtime.close()

    app = create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="segment_engine",
        description="Customer segments: rules, evaluation, manual assignment, membership history.",
    )
    app.include_router(build_router())
    return app


def asyncapi(settings: Settings) -> AsyncAPI:
    """The Kafka side of the service, for the generated AsyncAPI document."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.POS_SALES, group_id=settings.consumer_group, title="on_sale_event",
                       description="Completed, voided and returned sales: the facts segments are computed from")
    async def on_sale_event(event: SaleEvent) -> None: ...

    @broker.subscriber(topics.CRM_CUSTOMERS, group_id=settings.consumer_group, title="on_customer_event",
                       description="Registrations and loyalty tier changes from the CRM")
    async def on_customer_event(event: CustomerEvent) -> None: ...

    broker.publisher(topics.SEGMENT_MEMBERSHIPS, schema=CustomerSegmentsChanged, title="to_segment_memberships",
                     description="A customer's complete, current segment list (key: customer_id)")
    return AsyncAPI(broker, title="segment_engine", version="1.0.0")
