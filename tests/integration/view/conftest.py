"""marketing_view run in-process on the test's own topics and Redis key prefix (never the stack's)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.marketing_view.app import create_app, open_redis
from services.marketing_view.config import Settings
from services.marketing_view.generations import ReadModel
from services.marketing_view.schemas import MarketingTab
from services.marketing_view.scripts import AnyRedis
from tests.conftest import Stack
from tests.helpers import eventually


@dataclass
class View:
    client: httpx.AsyncClient
    settings: Settings
    redis: AnyRedis
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


async def wipe(redis: AnyRedis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis.unlink(*keys)


@asynccontextmanager
async def running_bounded(app: FastAPI, shutdown_timeout_s: float = 30) -> AsyncIterator[httpx.AsyncClient]:
    """Like tests.helpers.running, but a shutdown stuck on a dead dependency cannot wedge the whole run."""
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            yield client
    finally:
        try:
            await asyncio.wait_for(lifespan.__aexit__(None, None, None), shutdown_timeout_s)
        except TimeoutError:
            print(f"the service did not stop within {shutdown_timeout_s}s (a dependency hung); carrying on")


@asynccontextmanager
async def serving(settings: Settings, api_key: str) -> AsyncIterator[View]:
    """Run marketing_view in-process and wait until it serves (its first build is a rebuild)."""
    app = create_app(settings)
    redis = open_redis(settings)
    try:
        async with running_bounded(app) as client:
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
    from shared.kafka import delete_topics as delete

    try:
        await delete(bootstrap, prefix)
    except Exception as exc:  # best effort: never fail a test for its clean-up
        print(f"could not delete the test's topics: {exc!r}")


async def drained(stack: Stack, prefix: str, group: str, timeout_s: float = 30) -> None:
    """Wait until the consumer group committed every domain topic's end offset: everything was applied."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.contracts import topics as names

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await consumer.start()
    await admin.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(prefix + t, p) for t in names.DOMAIN_TOPICS
                      for p in cluster.partitions_for_topic(prefix + t) or []]
        end = await consumer.end_offsets(partitions)

        async def caught_up() -> bool:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            done = {tp: max(committed[tp].offset, 0) if tp in committed else 0 for tp in partitions}
            behind = {f"{tp.topic}[{tp.partition}]": end[tp] - done[tp] for tp in partitions if end[tp] > done[tp]}
            assert not behind, behind
            return True

        await eventually(caught_up, timeout_s=timeout_s, what=f"consumer group {group} caught up")
    finally:
        await admin.close()
        await consumer.stop()


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
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def free_port() -> int:
    """A free port whose Redis Cluster bus port (+10000) is free as well."""
    import random
    import socket

    for _ in range(200):
        port = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def socket_connect(port: int):  # type: ignore[no-untyped-def]
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=0.5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(str(tmp_path))
    try:
        server.start()
        yield server
    finally:
        server.stop()


class PrivateCluster:
    """A three-node Redis Cluster of this test alone (no replicas, no persistence)."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [PrivateRedis(str(workdir / f"node{i}")) for i in range(3)]
        self.url = self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            Path(node.workdir).mkdir(parents=True, exist_ok=True)
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "5000"]
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [subprocess.run(["redis-cli", "-p", str(n.port), "cluster", "info"], capture_output=True,
                                     text=True).stdout for n in self.nodes]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.2)
        raise RuntimeError("the private Redis Cluster did not become ready")

    def flushall(self) -> None:
        for node in self.nodes:
            subprocess.run(["redis-cli", "-p", str(node.port), "flushall"], check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
