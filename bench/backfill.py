"""Backfill of a changed segment rule over N customers, and the bare SQL scan of the same predicate."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from bench.system import Stack
from shared.contracts.topics import all_topics
from shared.kafka import delete_topics, ensure_topics

INVOICES_PER_CUSTOMER = 5
THRESHOLDS = ("1000.00", "1200.00")
WINDOW_DAYS = 365

GENERATE = f"""
SELECT setseed(0.42);
DELETE FROM invoices; DELETE FROM memberships; DELETE FROM membership_history; DELETE FROM customers;
DELETE FROM outbox;
INSERT INTO customers (customer_id, signup_day, registration_at, loyalty_tier, tier_at)
SELECT 'C-' || lpad(i::text, 7, '0'),
       CASE WHEN i % 6 = 0 THEN current_date - (i % 700) END,
       CASE WHEN i % 6 = 0 THEN now() - make_interval(days => i % 700) END,
       CASE WHEN i % 5 = 0 THEN (ARRAY['Bronze', 'Silver', 'Gold', 'Platinum'])[1 + i % 4] END,
       CASE WHEN i % 5 = 0 THEN now() END
FROM generate_series(1, $1::int) AS i;
INSERT INTO invoices (invoice_number, customer_id, store_id, business_day, occurred_at, total, units, categories,
                      has_sale)
SELECT 'INV-B-' || i || '-' || k, 'C-' || lpad(i::text, 7, '0'), 'S-00' || (1 + (i + k) % 5),
       current_date - d, now() - make_interval(days => d), round((20 + random() * 420)::numeric, 2), 1 + k % 3,
       ARRAY[(ARRAY['Footwear', 'Denim', 'Tops', 'Socks', 'Kids'])[1 + (i * k) % 5]], true
FROM generate_series(1, $1::int) AS i, generate_series(1, {INVOICES_PER_CUSTOMER}) AS k,
     LATERAL (SELECT ((i::bigint * 7919 + k * 104729) % 400)::int AS d) AS days;
"""

BARE_SCAN = """
SELECT count(*) FROM (
    SELECT customer_id FROM invoices
    WHERE counted AND business_day > current_date - $2::int
    GROUP BY customer_id HAVING sum(net_spend) >= $1::numeric
) AS matching
"""


def _rule(threshold: str) -> dict[str, Any]:
    return {"name": "High Value", "description": "Customers who spent at least the threshold in the last 365 days.",
            "rule": {"total_spend": {"min": threshold, "window_days": WINDOW_DAYS}}}


async def _wait_job(http: httpx.AsyncClient, headers: dict[str, str], job_id: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = (await http.get(f"/v1/segments/jobs/{job_id}", headers=headers)).json()
        if body["finished"]:
            if body["status"] != "done":
                raise RuntimeError(f"backfill job {job_id}: {body}")
            return body
        await asyncio.sleep(0.2)
    raise TimeoutError(f"backfill job {job_id} not done within {timeout_s}s")


async def _wait_idle(http: httpx.AsyncClient, headers: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        segments = (await http.get("/v1/segments", headers=headers)).json()
        items = segments["items"]
        if all((s.get("backfill") or {}).get("status") not in ("pending", "running") for s in items):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("initial jobs did not finish")


async def backfill(stack: Stack, customers: int, run_tag: str, *, timeout_s: float = 900) -> dict[str, Any]:
    from services.segment_engine.app import create_app
    from services.segment_engine.config import Settings
    from tests.helpers import running

    schema = f"segment_engine_bench_{customers}"
    prefix = f"bench{run_tag}.se."
    await ensure_topics(stack.kafka, {prefix + name: 1 for name in all_topics()})
    settings = Settings(db_schema=schema, consumer_group=f"bench-se-{run_tag}", kafka_topic_prefix=prefix,
                        sweep_on_start=False, sweep_interval_s=10**6, job_poll_s=0.1)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    out: dict[str, Any] = {"backfill_customers": customers}
    try:
        async with running(create_app(settings)) as http:
            await _wait_idle(http, headers, 120)
            conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": schema})
            try:
                have = await conn.fetchval("SELECT count(*) FROM customers")
                invoices = await conn.fetchval("SELECT count(*) FROM invoices")
                generated = have != customers or invoices != customers * INVOICES_PER_CUSTOMER
                if generated:
                    started = time.perf_counter()
                    await conn.execute(GENERATE.replace("$1::int", str(int(customers))))
                    await conn.execute("ANALYZE")
                    out["backfill_generate_s"] = time.perf_counter() - started
                current = (await http.get("/v1/segments/high-value", headers=headers)).json()
                threshold = current["rule"]["total_spend"]["min"]
                if generated:  # bring memberships up to date with the new facts first (not timed)
                    other = THRESHOLDS[1] if threshold == THRESHOLDS[0] else THRESHOLDS[0]
                    job = (await http.put("/v1/segments/high-value", headers=headers, json=_rule(other))).json()
                    await _wait_job(http, headers, job["backfill"]["job_id"], timeout_s)
                    threshold = other
                new = THRESHOLDS[1] if threshold == THRESHOLDS[0] else THRESHOLDS[0]
                # Announcements a previous run left unsent (its topics are gone) would be relayed during the
                # timed backfill: the relay then competes with it for announcements that are not its own.
                await conn.execute("DELETE FROM outbox")
                scans = []
                for _ in range(2):
                    started = time.perf_counter()
                    matching = await conn.fetchval(BARE_SCAN, new, WINDOW_DAYS)
                    scans.append(time.perf_counter() - started)
                response = await http.put("/v1/segments/high-value", headers=headers, json=_rule(new))
                job = await _wait_job(http, headers, response.json()["backfill"]["job_id"], timeout_s)
                members = await conn.fetchval(
                    "SELECT count(*) FROM memberships WHERE segment_id = 'high-value' AND rule_match")
            finally:
                await conn.close()
    finally:
        await delete_topics(stack.kafka, prefix)
    seconds = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    out.update({
        "backfill_s": seconds, "bare_sql_s": min(scans), "backfill_threshold": new,
        "backfill_entered": job["entered"], "backfill_exited": job["exited"],
        "backfill_customers_changed": job["customers_changed"],
        "backfill_matching_bare_sql": matching, "backfill_matching_after": members,
    })
    return out
