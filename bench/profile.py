"""`python -m bench.profile ingest|rebuild [--service S] [--customers N]`: where the time goes (cProfile).

- ingest: one service (segment_engine, redemption_ledger or giftcard_ledger) runs in-process on a schema and
  topic prefix of its own; a realistic POS mix is published to that prefix and the profile covers the service
  consuming it until its group's lag is 0.
- rebuild: marketing_view's rebuild of N typical customers (14 domain events each) on a prefix of its own.

Prints the top functions by cumulative and by own time, and writes them to bench/results/profile-<what>.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import io
import pstats
import time

import asyncpg
from redis.asyncio import Redis

from bench import rebuild as rb
from bench.kafka_util import GROUP_TOPICS, LagProbe, publish_all, start_producer
from bench.system import ROOT, Stack, pos_mix
from shared.contracts.topics import DOMAIN_TOPICS, all_topics
from shared.kafka import delete_topics, ensure_topics


def _report(profile: cProfile.Profile, title: str, seconds: float, events: int) -> str:
    out = io.StringIO()
    out.write(f"{title}: {events} events in {seconds:.2f} s ({events / seconds:.0f} events/s)\n\n")
    for key in ("cumulative", "tottime"):
        out.write(f"--- top by {key} ---\n")
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key).print_stats(30)
    return out.getvalue()


async def profile_ingest(stack: Stack, service: str, customers: int) -> str:
    tag = f"{int(time.time()) % 10**8:08d}"
    prefix = f"prof{tag}."
    schema = f"{service}_prof{tag}"
    group = f"prof-{service}-{tag}"
    await ensure_topics(stack.kafka, {prefix + t: 6 for t in all_topics()})
    messages, _ = pos_mix(customers, 120, int(tag), f"C-F{tag}-")
    mine = [m for m in messages if m[0] in GROUP_TOPICS[service]]
    app_module = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    extra = {"sweep_on_start": False} if service == "segment_engine" else {}
    app = app_module.create_app(config.Settings(db_schema=schema, consumer_group=group, kafka_topic_prefix=prefix,
                                                **extra))
    from tests.helpers import running

    producer = await start_producer(stack.kafka)
    try:
        await publish_all(producer, mine, prefix=prefix)
    finally:
        await producer.stop()
    profile = cProfile.Profile()
    try:
        async with LagProbe(stack.kafka, {group: GROUP_TOPICS[service]}, prefix=prefix) as lag:
            started = time.perf_counter()
            profile.enable()
            async with running(app):
                while True:  # polled: the lag lives in Kafka, nothing here can be awaited for it
                    if (await lag.lags())[group] == 0:
                        break
                    await asyncio.sleep(0.05)
            profile.disable()
            seconds = time.perf_counter() - started
    finally:
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        await delete_topics(stack.kafka, prefix)
    return _report(profile, f"{service} consuming its share of a POS mix (start-up and migrations included)",
                   seconds, len(mine))


async def profile_rebuild(stack: Stack, customers: int) -> str:
    from services.marketing_view.app import make_rebuilder
    from services.marketing_view.config import Settings

    tag = f"{int(time.time()) % 10**8:08d}"
    prefix, key_prefix = f"prof{tag}.mv.", f"mvp{tag}"
    await ensure_topics(stack.kafka, {prefix + t: 6 for t in DOMAIN_TOPICS})
    settings = Settings(kafka_topic_prefix=prefix, key_prefix=key_prefix, rebuild_settle_s=0.0, auto_rebuild=False)
    redis = Redis.from_url(stack.redis_url)
    profile = cProfile.Profile()
    try:
        producer = await start_producer(stack.kafka)
        try:
            await publish_all(producer, rb.fill(rb.templates(), 1, customers), prefix=prefix)
        finally:
            await producer.stop()
        started = time.perf_counter()
        profile.enable()
        await make_rebuilder(settings, redis, None, None).run("profile")
        profile.disable()
        seconds = time.perf_counter() - started
    finally:
        await rb._unlink_prefix(redis, key_prefix)
        await redis.aclose()
        await delete_topics(stack.kafka, prefix)
    return _report(profile, f"marketing_view rebuild of {customers} typical customers", seconds,
                   customers * rb.EVENTS_PER_CUSTOMER)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["ingest", "rebuild"])
    parser.add_argument("--service", default="segment_engine",
                        choices=["segment_engine", "redemption_ledger", "giftcard_ledger"])
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args(argv)
    stack = Stack.from_env()
    if args.what == "ingest":
        text = asyncio.run(profile_ingest(stack, args.service, args.customers))
        name = f"profile-ingest-{args.service}.txt"
    else:
        text = asyncio.run(profile_rebuild(stack, args.customers))
        name = "profile-rebuild.txt"
    path = ROOT / "bench" / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
