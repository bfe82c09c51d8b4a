"""marketing_view run in-process on the test's own topics and Redis key prefix (never the stack's)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.marketing_view.app import create_app
from services.marketing_view.config import Settings
from services.marketing_view.generations import ReadModel
from services.marketing_view.schemas import MarketingTab
from tests.conftest import Stack
from tests.helpers import eventually, running


@dataclass
class View:
    client: httpx.AsyncClient
    settings: Settings
    redis: Redis
    model: ReadModel
    auth: dict[str, str]

    async def get(self, customer_id: str, **params: object) -> httpx.Response:
        return await self.client.get(f"/v1/customers/{customer_id}/marketing", headers=self.auth, params=params)

    async def tab(self, customer_id: str, **params: object) -> dict:
        response = await self.get(customer_id, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        MarketingTab.model_validate(body)  # exactly the documented shape, nothing more, nothing less
        return body


def view_settings(isolation: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "consumer_group": f"mv-{isolation}", "key_prefix": f"mv{isolation}", "watchdog_interval_s": 0.2,
        "rebuild_settle_s": 0.6, "cleanup_grace_s": 0.5, "session_secret": "test-session-secret",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def wipe(redis: Redis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis.unlink(*keys)


@asynccontextmanager
async def serving(settings: Settings, api_key: str) -> AsyncIterator[View]:
    """Run marketing_view in-process and wait until it serves (its first build is a rebuild)."""
    app = create_app(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with running(app) as client:
            model: ReadModel = app.state.model

            async def is_serving() -> bool:
                return model.serving

            await eventually(is_serving, timeout_s=30, what="marketing_view serving")
            yield View(client, settings, redis, model, {"Authorization": f"Bearer {api_key}"})
    finally:
        await wipe(redis, settings.key_prefix)
        await redis.aclose()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Drop the topics of a test's prefix: thousands of leftover partitions exhaust a small broker's heap."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    except Exception as exc:  # best effort: never fail a test for its clean-up
        print(f"could not delete the test's topics: {exc!r}")
    finally:
        await admin.close()


@pytest.fixture
async def topics(topics: str, stack: Stack) -> AsyncIterator[str]:
    """The shared ``topics`` fixture (a unique prefix), and its topics deleted after the test."""
    yield topics
    await delete_topics(stack.kafka, topics)


@pytest.fixture
async def view(stack: Stack, topics: str, isolation: str) -> AsyncIterator[View]:
    async with serving(view_settings(isolation), stack.api_key) as v:
        yield v


class PrivateRedis:
    """A redis-server of this test alone, without persistence: FLUSHALL and restarts hurt nobody else."""

    def __init__(self, workdir: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket_connect(self.port):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def restart(self) -> None:
        """A restart without persistence: Redis comes back empty, as in production after a crash."""
        self.stop()
        self.start()


def socket_connect(port: int):  # type: ignore[no-untyped-def]
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=0.5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(str(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()
