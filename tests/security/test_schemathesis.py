"""Schemathesis against each service's OpenAPI document: no 5xx, and every answer matches its documented schema.

Each service runs with its lifespan (real Postgres, Kafka, Redis; its own schema, topic prefix, consumer group and
Redis key prefix) under uvicorn in a thread with its own event loop, and Schemathesis calls it over HTTP with a key
that has both scopes. A few examples per operation keep the run short (CI time); Hypothesis prints the seed of a
failing run, and SCHEMATHESIS_EXAMPLES raises the count for a deeper local run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.kafka import ensure_topics
from shared.topology import topic_configs, topic_specs
from tests.conftest import Stack
from tests.security.apps import ALL_KEY, SERVICES, build

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {ALL_KEY}"}


@contextlib.contextmanager
def serve(service: str, stack: Stack) -> Iterator[str]:
    isolation = uuid.uuid4().hex[:10]
    prefix = f"t{isolation}."
    schema = f"sec_{service.split('_')[0]}_{isolation}"
    overrides: dict[str, Any] = {
        "kafka_bootstrap_servers": stack.kafka, "database_url": stack.database_url, "redis_url": stack.redis_url,
        "kafka_topic_prefix": prefix, "db_schema": schema, "consumer_group": f"sec-{service}-{isolation}",
        "rate_limit_per_s": 100_000, "rate_limit_burst": 100_000,
    }
    if service == "marketing_view":
        overrides = {k: v for k, v in overrides.items() if k != "db_schema"} | {"key_prefix": f"sec{isolation}"}
    app = build(service, **overrides)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    failure: list[BaseException] = []

    async def main() -> None:
        specs = {name: min(n, 3) for name, n in topic_specs(prefix).items()}
        await ensure_topics(stack.kafka, specs, config=topic_configs(prefix))
        try:
            await server.serve()
        finally:
            await _drop_schema(stack.database_url, schema)
            await _delete_topics(stack.kafka, list(specs))

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"serve-{service}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert not failure and thread.is_alive(), f"{service} did not start: {failure!r}"
        assert time.monotonic() < deadline, f"{service} did not start within 120s"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while requests.get(url + "/readyz", timeout=5).status_code != 200:  # e.g. marketing_view's first build
        assert time.monotonic() < deadline, f"{service} not ready within 120s"
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(60)
    assert not failure, failure


async def _drop_schema(database_url: str, schema: str) -> None:
    try:
        conn = await asyncpg.connect(database_url)
    except (OSError, asyncpg.PostgresError):  # best effort, like the topics: a leftover test schema is harmless
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    except Exception:  # best effort: a leftover test topic is harmless
        pass
    finally:
        await admin.close()


def fuzz(operation: Any, url: str) -> None:
    """A few generated requests against one operation; raises what Schemathesis found."""
    # /readyz answers its documented 503 when a dependency is down: that is its job, not a server error.
    checks = [response_schema_conformance] if operation.path == "/readyz" else \
        [not_a_server_error, response_schema_conformance]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(base_url=url, headers=AUTH, timeout=30, checks=checks)

    check()


@pytest.mark.parametrize("service", SERVICES)
def test_no_server_error_and_every_answer_matches_the_schema(service: str, stack: Stack) -> None:
    problems: list[str] = []
    with serve(service, stack) as url:
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert operations
        for operation in operations:
            try:
                fuzz(operation, url)
            except Exception as exc:  # collect every operation's failure, then fail once with all of them
                problems.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert problems == [], "\n\n".join(problems)
