"""Wiring of marketing_view: domain-event subscribers, the read API, lifespan. GET-only to the outside."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from redis.asyncio import Redis

from services.marketing_view.config import Settings
from services.marketing_view.projection import Projector
from services.marketing_view.views import read_tab
from shared.auth import Principal, Scope, require
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.domain import SegmentDomainEvent
from shared.http import add_check, create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "marketing_view"
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(settings.redis_url)
        projector = Projector(redis, settings.key_prefix)
        app.state.redis = redis
        runtime = await open_runtime(name=NAME, settings=settings, schema=None, database_url=None,
                                     migrations_dir=None)
        add_runtime_checks(app, runtime)
        add_check(app, "redis", redis.ping)

        async def on_segment_events(batch: Sequence[Delivery]) -> None:
            for d in batch:
                await projector.project_segments(d.event)

        await runtime.start_consumer({topics.SEGMENT_MEMBERSHIPS: on_segment_events}, group_id=settings.consumer_group)
        try:
            yield
        finally:
            await runtime.close()
            await redis.aclose()

    app = create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="marketing_view",
        description="Read model of the Customer Marketing tab (read-only).",
    )

    @app.get("/v1/customers/{customer_id}/marketing", tags=["marketing tab"],
             summary="A customer's Marketing tab: segments, coupon usage history, gift cards")
    async def customer_marketing(
        customer_id: str, request: Request, _: Annotated[Principal, Depends(require(Scope.READ))]
    ) -> dict[str, Any]:
        if not CUSTOMER_ID.match(customer_id):
            raise HTTPException(400, detail="customer_id must be 1-64 letters, digits, '.', '_', ':' or '-'")
        return await read_tab(request.app.state.redis, settings.key_prefix, customer_id)

    return app


def asyncapi(settings: Settings) -> AsyncAPI:
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.SEGMENT_MEMBERSHIPS, group_id=settings.consumer_group, title="on_segments_changed",
                       description="A customer's complete segment list from segment_engine")
    async def on_segments_changed(event: SegmentDomainEvent) -> None: ...

    return AsyncAPI(broker, title="marketing_view", version="1.0.0")
