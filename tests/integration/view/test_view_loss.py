"""Redis loses its data (FLUSHALL, or a restart without persistence): the service notices, /readyz says so,
the API answers 503 (never empty data as if it were current) until the rebuild finished, which starts by
itself. Runs on a redis-server of its own, so nobody else's data is flushed."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from services.marketing_view.app import make_rebuilder
from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.view.builders import card, publish_domain, redemption, segments
from tests.integration.view.conftest import PrivateRedis, View, serving, view_settings

C = "C-LOSS-1"


async def seed(view: View, stack: Stack, topics: str) -> dict:
    await publish_domain(stack.kafka, topics, [
        segments(C, 1, ("vip", "VIP", "2026-01-02", "manual", "loss")),
        redemption(C, "r-1"), redemption(C, "r-2", invoice="INV-2", used_at="2026-11-29T10:00:00-05:00"),
        card("gc-loss-1", C),
    ])

    async def complete() -> dict | None:
        body = await view.tab(C)
        return body if len(body["coupon_usage"]["items"]) == 2 and body["gift_cards"] and body["segments"] else None

    body = await eventually(complete, timeout_s=20, what="seeded")
    return {k: v for k, v in body.items() if k != "as_of"}


async def watch_until_recovered(view: View, expected: dict, *, what: str) -> tuple[int, str]:
    """Poll the API until it serves the full tab again; every answer meanwhile is 503 or the full tab."""
    unavailable, readyz_said = 0, ""
    for _ in range(600):
        response = await view.get(C)
        if response.status_code == 503:
            unavailable += 1
            assert "read model" in response.json()["detail"]
            ready = await view.client.get("/readyz")
            if ready.status_code == 503:
                readyz_said = ready.json()["checks"]["read_model"]
        else:
            assert response.status_code == 200, response.text
            body = {k: v for k, v in response.json().items() if k != "as_of"}
            assert body == expected, f"{what}: a 200 must be the complete tab, never an empty or partial one"
            if unavailable:
                return unavailable, readyz_said
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: never recovered")


async def test_flushall_is_noticed_and_repaired_by_itself(stack: Stack, topics: str, isolation: str,
                                                          private_redis: PrivateRedis) -> None:
    settings = view_settings(isolation, redis_url=private_redis.url)
    async with serving(settings, stack.api_key) as view:
        expected = await seed(view, stack, topics)
        await Redis.from_url(private_redis.url).flushall()
        unavailable, readyz = await watch_until_recovered(view, expected, what="after FLUSHALL")
        assert unavailable > 0
        assert "lost" in readyz or "no read model" in readyz, readyz
        assert (await view.client.get("/readyz")).status_code == 200


async def test_redis_restart_without_persistence(stack: Stack, topics: str, isolation: str,
                                                 private_redis: PrivateRedis) -> None:
    settings = view_settings(isolation, redis_url=private_redis.url)
    async with serving(settings, stack.api_key) as view:
        expected = await seed(view, stack, topics)
        await asyncio.to_thread(private_redis.restart)
        await watch_until_recovered(view, expected, what="after a restart")
        # and it still projects new events afterwards (scripts reloaded after NOSCRIPT)
        await publish_domain(stack.kafka, topics, [segments(C, 2, ("vip", "VIP", "2026-01-02", "manual", "new"))])

        async def projected() -> bool:
            return (await view.tab(C))["segments"][0]["notes"] == "new"

        await eventually(projected, timeout_s=20, what="projection after the restart")


async def test_without_auto_rebuild_it_stays_503_until_the_rebuild_command(
        stack: Stack, topics: str, isolation: str, private_redis: PrivateRedis) -> None:
    settings = view_settings(isolation, redis_url=private_redis.url, auto_rebuild=False)
    redis = Redis.from_url(private_redis.url)
    try:
        await make_rebuilder(settings, redis, None).run("command")  # the first build, by hand
        async with serving(settings, stack.api_key) as view:
            expected = await seed(view, stack, topics)
            await redis.flushall()

            async def noticed() -> httpx.Response | None:
                response = await view.client.get("/readyz")
                return response if response.status_code == 503 else None

            ready = await eventually(noticed, timeout_s=10, what="/readyz notices the loss")
            said = ready.json()["checks"]["read_model"]
            assert "lost" in said or "no read model" in said, said
            for _ in range(10):  # several watchdog intervals: nothing rebuilds by itself
                assert (await view.get(C)).status_code == 503
                await asyncio.sleep(0.1)
            assert not await redis.exists(view.model.keys.lock)
            await make_rebuilder(settings, redis, None).run("command")

            async def back() -> bool:
                response = await view.get(C)
                return response.status_code == 200 and {k: v for k, v in response.json().items()
                                                         if k != "as_of"} == expected

            await eventually(back, timeout_s=10, what="served again after the rebuild command")
    finally:
        await redis.aclose()
