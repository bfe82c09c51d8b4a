"""MARKETING_VIEW_ROLE: the read API and the projector as two processes (here two apps) on one Redis.

- ``projector``: consumes, rebuilds on first start, serves only /healthz, /readyz and /metrics;
- ``api``: serves the tab from what the projector wrote, runs no consumer (no Kafka at all) and no rebuild;
  it answers 503 while there is no model, and again as soon as Redis loses it.
"""

from __future__ import annotations

import asyncio

import pytest

from services.marketing_view.app import create_app, open_redis
from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.view.builders import publish_domain, segments
from tests.integration.view.conftest import running_bounded, view_settings, wipe


async def test_api_serves_what_the_projector_writes_and_runs_no_consumer(stack: Stack, topics: str,
                                                                      isolation: str) -> None:
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    api_app = create_app(view_settings(isolation, role="api"))
    projector_app = create_app(view_settings(isolation, role="projector", http_port=18985))
    redis = open_redis(view_settings(isolation))
    try:
        async with running_bounded(api_app) as api:
            tab = "/v1/customers/C-ROLES-1/marketing"
            before = await api.get(tab, headers=auth)
            assert before.status_code == 503 and before.headers["retry-after"] == "2", "no model, no rebuild here"
            ready = await api.get("/readyz")
            assert ready.status_code == 503 and set(ready.json()["checks"]) == {"redis", "read_model"}
            assert "kafka" not in ready.json()["checks"], "the API role does not touch Kafka"

            async with running_bounded(projector_app) as projector:
                assert (await projector.get(tab, headers=auth)).status_code == 404, "the projector serves no API"
                assert (await projector.get("/customers/C-ROLES-1/marketing?key=x")).status_code == 404
                assert (await projector.get("/healthz")).status_code == 200
                assert (await projector.get("/metrics")).status_code == 200
                assert (await projector.post("/readyz")).status_code == 405, "read-only like the API"

                async def projector_ready() -> bool:
                    response = await projector.get("/readyz")
                    assert response.status_code == 200, response.text
                    assert set(response.json()["checks"]) == {"kafka", "redis"}
                    return True

                await eventually(projector_ready, timeout_s=30, what="projector ready")
                await publish_domain(stack.kafka, topics,
                                     [segments("C-ROLES-1", 1, ("vip", "VIP", "2026-01-02", "manual", "x"))])

                async def projected() -> bool:
                    response = await api.get(tab, headers=auth)
                    assert response.status_code == 200, response.text
                    assert [s["segment_id"] for s in response.json()["segments"]] == ["vip"]
                    return True

                await eventually(projected, timeout_s=30, what="the API serves the projector's write")
                assert (await api.get("/readyz")).status_code == 200

            await wipe(redis, view_settings(isolation).key_prefix)  # Redis lost its data: no projector rebuilds

            async def unavailable() -> bool:
                response = await api.get(tab, headers=auth)
                assert response.status_code == 503, response.text
                return True

            await eventually(unavailable, timeout_s=10, what="503 once the model is gone")
            await asyncio.sleep(3 * api_app.state.model.interval_s)
            rebuilds = [t for t in asyncio.all_tasks() if t.get_name() == "marketing_view-auto-rebuild"]
            assert not rebuilds, "the API role never starts a rebuild"
            assert (await api.get(tab, headers=auth)).status_code == 503
    finally:
        await wipe(redis, view_settings(isolation).key_prefix)
        await redis.aclose()


@pytest.mark.parametrize("role", ["all", "api", "projector"])
def test_the_openapi_document_lists_the_tab_only_where_it_is_served(role: str) -> None:
    paths = set(create_app(view_settings("doc", role=role)).openapi()["paths"])
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    served = {"/v1/customers/{customer_id}/marketing", "/customers/{customer_id}/marketing"}
    assert (served <= paths) if role != "projector" else not (served & paths)
