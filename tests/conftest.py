"""Real-service fixtures. Where Kafka, Postgres and Redis come from, in order:

1. environment variables (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL) naming running servers;
2. testcontainers, when a Docker engine answers;
3. otherwise the local stack (deploy/local/stack.py up), started here if it is not running.

A real-service test never skips: if none of these works, it fails and says why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.kafka import delete_topics

ROOT = Path(__file__).resolve().parents[1]
POS_EXAMPLES = ROOT.parent / "shared" / "contracts" / "examples"
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Stack:
    kafka: str
    database_url: str
    redis_url: str
    api_key: str
    env: dict[str, str]
    services_running: bool


def _from_env() -> Stack | None:
    names = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
    if not all(os.environ.get(n) for n in names):
        return None
    env = {k: v for k, v in os.environ.items() if k.isupper()}
    return Stack(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"], os.environ["REDIS_URL"],
                 os.environ.get("MARKETING_API_KEY", "test-key-" + uuid.uuid4().hex), env,
                 services_running=bool(os.environ.get("MARKETING_VIEW_URL")))


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _from_testcontainers(stack: contextlib.ExitStack) -> Stack:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    kafka = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
    pg = stack.enter_context(PostgresContainer("postgres:17-alpine", driver=None))
    redis = stack.enter_context(RedisContainer("redis:7.4-alpine"))
    url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
    return Stack(kafka.get_bootstrap_server(), pg.get_connection_url(), url, "test-key-" + uuid.uuid4().hex, {},
                 services_running=False)


def _from_local_stack() -> Stack:
    env_file = ROOT / ".local" / "stack.env"
    result = subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "up"], cwd=ROOT)
    if result.returncode != 0:
        pytest.fail("could not start the local stack (deploy/local/stack.py up); see its output above")
    env: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip("'")
    return Stack(env["KAFKA_BOOTSTRAP_SERVERS"], env["DATABASE_URL"], env["REDIS_URL"], env["MARKETING_API_KEY"],
                 env, services_running=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    found = _from_env()
    if found is not None:
        yield found
        return
    if _docker_answers():
        with contextlib.ExitStack() as exit_stack:
            yield _from_testcontainers(exit_stack)
        return
    yield _from_local_stack()


@pytest.fixture
def isolation() -> str:
    """A unique suffix: for a test's own topic prefix, schema, consumer group and Redis key prefix."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def service_env(stack: Stack, isolation: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a service run in-process by a test, isolated from the running stack's services."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "MARKETING_API_KEY": stack.api_key,
        "KAFKA_TOPIC_PREFIX": f"t{isolation}.",
        "GIFTCARD_LEDGER_CARD_HMAC_KEY": "test-hmac-key-" + isolation,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def topics(stack: Stack, service_env: dict[str, str]) -> AsyncIterator[str]:
    """Creates every topic under the test's own prefix; yields the prefix."""
    from shared.kafka import ensure_topics
    from shared.topology import topic_configs, topic_specs

    prefix = service_env["KAFKA_TOPIC_PREFIX"]
    specs = {name: min(n, 3) for name, n in topic_specs(prefix).items()}
    await ensure_topics(stack.kafka, specs, config=topic_configs(prefix))
    yield prefix
    await delete_topics(stack.kafka, prefix)
