"""Issue 10 point 1, end to end on the running local stack: no full card number anywhere but where it must be.

Cards with known, unique numbers are issued through the API (giftcard_ledger POST /v1/gift-cards) and activated
by POS events on the real topic pos.giftcard-activity.v1 (one number alphanumeric, one malformed event that is
dead-lettered); then traffic (reloads, redemptions, refunds, reads of every GET endpoint about these customers and
cards). Then everything is scanned for every full number (case-insensitively, and as hex for bytea columns):
every table of every schema of Postgres, every Redis key and value of every database, every record (key, value,
headers) of every topic except pos.giftcard-activity.v1 written since the test began (the numbers are new: no
earlier record can hold them, and a local stack after a day of benchmarks holds millions), every log file under
.local/logs, and every API answer except the issuing ones. Zero occurrences. Masked numbers show only the last 4.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from shared.contracts import topics as t
from tests.conftest import ROOT, Stack
from tests.helpers import eventually, publish

# Other tests' and benchmarks' own short-lived topics (their prefix isolates them from the stack's): not ours to scan.
TEMPORARY_TOPIC = re.compile(r"^(t[0-9a-f]{10}\.|bench\.)")
# Likewise their isolated Postgres schemas (`<svc>_<hex>`, `<svc>_rel<hex>`) and benchmark schemas (`*_bench_<n>`).
TEMPORARY_SCHEMA = re.compile(r"(_bench_\d+|_(rel)?[0-9a-f]{8,10})$")
MASKED = re.compile(r"^•••• •••• •••• [0-9A-Z]{4}$")
LOGS = ROOT / ".local" / "logs"


def _digits(n: int) -> str:
    return str(secrets.randbelow(9) + 1) + "".join(secrets.choice(string.digits) for _ in range(n - 1))


def _event(event_type: str, number: str, amount: str, customer: str, **fields: Any) -> dict[str, Any]:
    event = {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
             "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(), "store_id": "S-SEC",
             "card_number": number, "amount": amount, "currency": "USD",
             "invoice_number": f"INV-SEC-{uuid.uuid4().hex[:8]}", "customer_id": customer}
    if event_type == "giftcard.activated":
        event["expires_on"] = None
    return event | fields


class Traffic:
    """An HTTP client that keeps every answer it got, except the ones it is told to forget (the issuing ones)."""

    def __init__(self, stack: Stack) -> None:
        self.env = stack.env
        self.auth = {"Authorization": f"Bearer {stack.api_key}"}
        self.http = httpx.AsyncClient(timeout=10)
        self.answers: list[tuple[str, httpx.Response]] = []

    async def call(self, service: str, method: str, path: str, *, keep: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex, **kwargs.pop("headers", {})}
        response = await self.http.request(method, self.env[f"{service}_URL"] + path, headers=headers, **kwargs)
        if keep:
            self.answers.append((f"{method} {service} {path}", response))
        return response


@pytest.mark.timeout(900)  # reads all of Postgres and Redis: minutes on a local stack after a day of benchmarks
async def test_no_full_card_number_leaves_where_it_belongs(stack: Stack) -> None:
    assert stack.services_running, "this test runs against the running local stack's services"
    since = await _topic_ends(stack)  # before anything of this test is written
    traffic = Traffic(stack)
    customer = f"C-SEC{uuid.uuid4().hex[:8]}"
    by_api = ["8" + _digits(15), "7" + _digits(19)]  # 16 and 20 digits, supplied by staff
    at_till = ["6" + _digits(15), "GQ" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                                 for _ in range(12))]
    numbers = list(by_api) + list(at_till)

    # Issue through the API (these answers hold the full number: the one place allowed, not scanned).
    card_ids = []
    for number in [*by_api, None]:
        body = {"customer_id": customer, "amount": "50.00", "currency": "USD"} | (
            {"card_number": number} if number else {})
        issued = await traffic.call("GIFTCARD_LEDGER", "POST", "/v1/gift-cards", json=body, keep=False)
        assert issued.status_code == 201, issued.text
        card_ids.append(issued.json()["card_id"])
        if number is None:
            numbers.append(issued.json()["card_number"])  # the generated one
    # Activate at the till, with traffic on the real topic (its key is the card number, as the contract says).
    activations = [_event("giftcard.activated", n, "40.00", customer) for n in at_till]
    redeemed = _event("giftcard.redeemed", at_till[0], "15.00", customer)
    follow_ups = [_event("giftcard.reloaded", at_till[1], "5.00", customer), redeemed,
                  _event("giftcard.refunded", at_till[0], "5.00", customer,
                         original_invoice_number=redeemed["invoice_number"]),
                  _event("giftcard.redeemed", by_api[0], "1.00", customer),
                  _event("giftcard.redeemed", "5" + _digits(15), "1.00", customer)]  # unknown card: a rejection
    poison = _event("giftcard.redeemed", at_till[0], "1.00", customer) | {"amount": 1.5}  # a float: dead-lettered
    numbers.append(follow_ups[-1]["card_number"])
    topic = t.POS_GIFTCARD_ACTIVITY
    await publish(stack.kafka, topic, [(e["card_number"].encode(), orjson.dumps(e)) for e in activations])
    await publish(stack.kafka, topic, [(e["card_number"].encode(), orjson.dumps(e)) for e in [*follow_ups, poison]])

    async def processed() -> bool:
        found = await traffic.call("GIFTCARD_LEDGER", "GET", f"/v1/customers/{customer}/gift-cards")
        balances = sorted(c["current_balance"] for c in found.json()["items"])
        return balances == ["30.00", "45.00", "49.00", "50.00", "50.00"]

    await eventually(processed, timeout_s=60, interval_s=0.5, what="the POS events applied")
    # API writes on the cards, then reads of every GET endpoint about them.
    for card_id in card_ids[:2]:
        assert (await traffic.call("GIFTCARD_LEDGER", "POST", f"/v1/gift-cards/{card_id}/reload",
                                   json={"amount": "2.00"})).status_code == 200
    for number in numbers[:-1]:
        found = await traffic.call("GIFTCARD_LEDGER", "POST", "/v1/gift-cards/lookup", json={"card_number": number})
        assert found.status_code == 200, found.text
        card_ids.append(found.json()["card_id"])
    for card_id in set(card_ids):
        for path in (f"/v1/gift-cards/{card_id}", f"/v1/gift-cards/{card_id}/transactions"):
            assert (await traffic.call("GIFTCARD_LEDGER", "GET", path)).status_code == 200
    await traffic.call("GIFTCARD_LEDGER", "GET", "/v1/gift-cards/expiring?within_days=3660&limit=200")
    await traffic.call("GIFTCARD_LEDGER", "POST", "/v1/gift-cards/sweep")

    async def tab_has_the_cards() -> bool:
        tab = await traffic.call("MARKETING_VIEW", "GET", f"/v1/customers/{customer}/marketing")
        return tab.status_code == 200 and len(tab.json()["gift_cards"]) == 5

    await eventually(tab_has_the_cards, timeout_s=60, interval_s=0.5, what="the tab shows the five cards")
    await traffic.call("MARKETING_VIEW", "GET", f"/customers/{customer}/marketing")
    await traffic.call("SEGMENT_ENGINE", "GET", f"/v1/customers/{customer}/segments")
    await traffic.call("SEGMENT_ENGINE", "GET", f"/v1/customers/{customer}/segments/history")
    await traffic.call("REDEMPTION_LEDGER", "GET", f"/v1/customers/{customer}/coupon-redemptions")
    await traffic.call("REDEMPTION_LEDGER", "GET", f"/v1/customers/{customer}/coupon-insights")
    for service in ("GIFTCARD_LEDGER", "REDEMPTION_LEDGER", "SEGMENT_ENGINE", "MARKETING_VIEW"):
        for path in ("/healthz", "/readyz", "/metrics"):
            await traffic.call(service, "GET", path)
    await _dead_letter_arrived(stack, poison["event_id"])

    # --- the scan -----------------------------------------------------------------------------------------------
    needle = re.compile(b"|".join(re.escape(n.encode()) for n in numbers), re.IGNORECASE)
    hex_needle = re.compile("|".join(n.upper().encode().hex() for n in numbers).encode(), re.IGNORECASE)
    leaks: list[str] = []
    leaks += _scan_answers(traffic, needle)
    leaks += await _scan_postgres(stack, numbers)
    leaks += await _scan_redis(stack, needle, hex_needle)
    leaks += await _scan_topics(stack, needle, since)
    leaks += _scan_logs(needle)
    await traffic.http.aclose()
    # The scanners do find numbers where they are allowed to be (so the zero below means something).
    on_pos_topic = await _scan_topics(stack, needle, since, only=t.POS_GIFTCARD_ACTIVITY)
    assert len(on_pos_topic) >= len(activations) + len(follow_ups)
    assert await _scan_postgres(stack, [customer]), "the customer id is in the ledgers: the Postgres scan reads them"
    customer_needle = re.compile(re.escape(customer.encode()))
    assert await _scan_redis(stack, customer_needle, customer_needle), "the tab is in Redis: the scan reads it"
    assert leaks == [], "full card numbers found:\n" + "\n".join(leaks[:30])

    # Masked numbers show only the last 4, in the API and in the tab.
    tab = (await Traffic(stack).call("MARKETING_VIEW", "GET", f"/v1/customers/{customer}/marketing")).json()
    shown = {g["last4"] for g in tab["gift_cards"]}
    assert shown == {n.upper()[-4:] for n in numbers[:5]}
    for _, response in traffic.answers:
        for masked in _masked_values(response):
            assert MASKED.match(masked), masked


def _masked_values(response: httpx.Response) -> list[str]:
    if "json" not in response.headers.get("content-type", ""):
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "card_number_masked":
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(response.json())
    return found


def _scan_answers(traffic: Traffic, needle: re.Pattern[bytes]) -> list[str]:
    leaks = []
    for what, response in traffic.answers:
        raw = response.content + b"\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        if needle.search(raw):
            leaks.append(f"API answer {what} ({response.status_code})")
    return leaks


async def _scan_postgres(stack: Stack, numbers: list[str]) -> list[str]:
    patterns = [f"%{n}%" for n in numbers] + [f"%{n.upper().encode().hex()}%" for n in numbers]
    conn = await asyncpg.connect(stack.database_url)
    leaks = []
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')")
        assert tables, "no tables to scan?"
        for row in tables:
            if TEMPORARY_SCHEMA.search(row["table_schema"]):
                continue
            name = f'"{row["table_schema"]}"."{row["table_name"]}"'
            try:
                hits = await conn.fetchval(f"SELECT count(*) FROM {name} AS t WHERE t::text ILIKE ANY($1::text[])",
                                           patterns)
            except asyncpg.UndefinedTableError:  # dropped by another test meanwhile
                continue
            if hits:
                leaks.append(f"Postgres {name}: {hits} rows")
    finally:
        await conn.close()
    return leaks


async def _scan_redis(stack: Stack, needle: re.Pattern[bytes], hex_needle: re.Pattern[bytes]) -> list[str]:
    leaks = []
    base = Redis.from_url(stack.redis_url)
    try:
        keyspace = await base.info("keyspace")
    finally:
        await base.aclose()
    databases = [int(name[2:]) for name in keyspace] or [0]
    for db in databases:
        redis = Redis.from_url(stack.redis_url, db=db)
        try:
            batch: list[bytes] = []
            async for key in redis.scan_iter(count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    leaks += await _scan_redis_keys(redis, db, batch, needle, hex_needle)
                    batch = []
            leaks += await _scan_redis_keys(redis, db, batch, needle, hex_needle)
        finally:
            await redis.aclose()
    return leaks


async def _scan_redis_keys(redis: Redis, db: int, keys: list[bytes], needle: re.Pattern[bytes],
                           hex_needle: re.Pattern[bytes]) -> list[str]:
    """Every key's name and value, whatever its type (two pipelined round trips per batch of keys)."""
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        kinds = [k.decode() for k in await pipe.execute()]
    async with redis.pipeline(transaction=False) as pipe:
        for key, kind in zip(keys, kinds, strict=True):
            {"string": lambda k: pipe.get(k), "hash": lambda k: pipe.hgetall(k),
             "list": lambda k: pipe.lrange(k, 0, -1), "set": lambda k: pipe.smembers(k),
             "zset": lambda k: pipe.zrange(k, 0, -1), "stream": lambda k: pipe.xrange(k)}.get(
                kind, lambda k: pipe.exists(k))(key)
        values = await pipe.execute(raise_on_error=False)
    leaks = []
    for key, value in zip(keys, values, strict=True):
        blob = key + b"\n" + repr(value).encode()
        if needle.search(blob) or hex_needle.search(blob):
            leaks.append(f"Redis db {db} key {key!r}")
    return leaks


async def _partitions(stack: Stack, names: list[str]) -> list[TopicPartition]:
    """Every partition of these topics (a topic deleted meanwhile has none; a transient error is retried)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        for _ in range(20):
            described = await admin.describe_topics(names)
            transient = [d["topic"] for d in described if d["error_code"] not in (0, 3)  # 3: deleted meanwhile
                         or any(p["error_code"] for p in d["partitions"])
                         or (d["error_code"] == 0 and not d["partitions"])]
            if not transient:
                return [TopicPartition(d["topic"], p["partition"]) for d in described if d["error_code"] == 0
                        for p in d["partitions"]]
            await asyncio.sleep(0.5)
        raise AssertionError(f"topics not described: {transient[:5]}")
    finally:
        await admin.close()


async def _topic_ends(stack: Stack) -> dict[TopicPartition, int]:
    """Every partition's end offset now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(stack, [n for n in await consumer.topics() if not n.startswith("__")])
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def _scan_topics(stack: Stack, needle: re.Pattern[bytes], since: dict[TopicPartition, int], *,
                       only: str | None = None) -> list[str]:
    """The records written after ``since`` (a partition that was not there then: all of it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    leaks: list[str] = []
    try:
        names = [n for n in await consumer.topics() if not n.endswith(t.POS_GIFTCARD_ACTIVITY)
                 and not n.startswith("__") and not TEMPORARY_TOPIC.match(n)] if only is None else [only]
        assert only or (t.dlq(t.POS_GIFTCARD_ACTIVITY) in names and t.GIFTCARD_CARDS in names)
        partitions = await _partitions(stack, names)
        assert only is None or partitions, f"{only}: no partitions described"
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        for tp in partitions:  # explicit positions: seek_to_beginning proved unreliable after end_offsets
            consumer.seek(tp, max(beginnings[tp], since.get(tp, 0)))
        remaining = {tp for tp, end in ends.items() if end > 0}
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        idle = 0
        while remaining:
            polled = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            idle = 0 if polled else idle + 1
            if idle and idle % 3 == 0:  # a topic deleted meanwhile never reaches its end offset: stop waiting on it
                existing = await consumer.topics()
                remaining = {tp for tp in remaining if tp.topic in existing}
            assert idle < 30, f"topics stopped short of their end offsets: {sorted(map(str, remaining))[:5]}"
            for tp, records in polled.items():
                for record in records:
                    blob = b"\n".join([record.key or b"", record.value or b"",
                                       *(k.encode() + b"=" + v for k, v in record.headers)])
                    if needle.search(blob):
                        leaks.append(f"topic {tp.topic}[{tp.partition}] offset {record.offset}")
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return leaks


def _scan_logs(needle: re.Pattern[bytes]) -> list[str]:
    files = [p for p in LOGS.rglob("*") if p.is_file()]
    assert any(p.name == "giftcard_ledger.log" for p in files)
    return [f"log {p.relative_to(LOGS)}" for p in files if needle.search(Path(p).read_bytes())]


async def _dead_letter_arrived(stack: Stack, event_id: str) -> None:
    """Wait until the malformed event is on the dead-letter topic (so the scan covers it)."""
    consumer = AIOKafkaConsumer(t.dlq(t.POS_GIFTCARD_ACTIVITY), bootstrap_servers=stack.kafka, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async def arrived() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                if any(event_id.encode() in (r.value or b"") for r in records):
                    return True
            return False

        await eventually(arrived, timeout_s=60, interval_s=0.1, what="the malformed event dead-lettered")
    finally:
        await consumer.stop()
