"""A bare outbox relay in its own process, for scenario 9 (the test kills it with SIGKILL).

    python -m tests.reliability.relay_process <database_url> <schema> <bootstrap>
"""

from __future__ import annotations

import asyncio
import sys

from shared.db import create_pool
from shared.kafka import make_producer
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings


async def main(database_url: str, schema: str, bootstrap: str) -> None:
    pool = await create_pool(database_url, schema, max_size=2)
    producer = make_producer(CommonSettings(kafka_bootstrap_servers=bootstrap))
    await producer.start()
    relay = OutboxRelay(pool=pool, producer=producer, service="reliability", schema=schema, batch_size=7,
                        idle_poll_s=0.05)
    await relay.start()
    print("relay started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
