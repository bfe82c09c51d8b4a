"""segment_engine on real Kafka and Postgres: events to memberships, time passing, rule change with backfill,
deleted segment, dead letters. The service runs in-process with its own schema, topics and a fixed clock."""

from __future__ import annotations

from datetime import timedelta

import orjson

from shared.contracts import topics as t
from tests.conftest import Stack
from tests.helpers import eventually, read_topic
from tests.integration.segments.support import (
    Engine,
    days_ago,
    engine,
    registered,
    returned,
    sale,
    tier_changed,
    void,
)


async def test_events_become_memberships_with_explanations_and_announcements(
        stack: Stack, topics: str, isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        cid = "C-flow-1"
        await e.crm(registered(cid, days_ago(3)))
        body = await e.wait_for_segments(cid, ["New Customer"])
        assert body["segments"] == [{
            "segment_id": "new-customer", "name": "New Customer", "date_assigned": "2026-06-15",
            "assigned_by": "automatic",
            "notes": "Signed up on 2026-06-12, 3 days ago (rule: signed up within the last 30 days)",
        }]

        # Four sales in the last 30 days, but the void of one of them arrives before the sale itself.
        two_units = [("Footwear", 1, "200.00"), ("Socks", 1, "100.00")]
        await e.sales(void(cid, "INV-4", days_ago(1)), sale(cid, "INV-1", days_ago(20), "300.00", lines=two_units),
                      sale(cid, "INV-2", days_ago(10), "300.00"), sale(cid, "INV-3", days_ago(5), "300.00"),
                      sale(cid, "INV-4", days_ago(2), "300.00"), sale(None, "INV-ANON", days_ago(1), "999.00"))
        await e.wait_applied(7)
        assert await e.segment_names(cid) == ["New Customer"]
        assert not await e.db("SELECT 1 FROM invoices WHERE invoice_number = 'INV-ANON'"), "anonymous: ignored"

        await e.sales(sale(cid, "INV-5", days_ago(0.1), "150.00"))
        body = await e.wait_for_segments(cid, ["Frequent Buyer", "High Value", "New Customer"])
        notes = {s["name"]: s["notes"] for s in body["segments"]}
        assert notes["Frequent Buyer"] == "4 purchases in the last 30 days (rule: at least 4)"
        assert notes["High Value"] == "Spent $1,050.00 in the last 365 days (rule: at least $1,000.00)"

        # A partial return (1 of the 2 units of INV-1) takes spend back (below the threshold), not the purchase.
        await e.sales(returned(cid, "RET-1", "INV-1", days_ago(0.05), "100.00", category="Socks"))
        await e.wait_for_segments(cid, ["Frequent Buyer", "New Customer"])

        announced = await e.latest_announcement(cid, at_least=3)
        assert [(s.name, s.assigned_by.value, str(s.date_assigned)) for s in announced.segments] == [
            ("Frequent Buyer", "automatic", "2026-06-15"), ("New Customer", "automatic", "2026-06-15")]
        history = await e.history(cid)
        assert [(h["segment_id"], h["action"], h["reason"]) for h in history] == [
            ("high-value", "exited", "rule_stopped_matching"),
            ("high-value", "entered", "rule_matched"),
            ("frequent-buyer", "entered", "rule_matched"),
            ("new-customer", "entered", "rule_matched"),
        ]

        # The incremental result is what a full recompute finds: a sweep now changes nothing.
        job = await e.sweep()
        assert (job["entered"], job["exited"], job["customers_changed"]) == (0, 0, 0)

        # Tier changes apply by occurred_at: an older one arriving late does not undo a newer one.
        await e.crm(tier_changed(cid, days_ago(0.01), "Gold"), tier_changed(cid, days_ago(2), "Bronze"))
        await e.wait_for_segments(cid, ["Frequent Buyer", "New Customer", "VIP"])


async def test_time_passing_ends_new_customer_and_starts_at_risk_without_any_event(
        stack: Stack, topics: str, isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        newcomer, regular = "C-newcomer", "C-regular"
        await e.crm(registered(newcomer, days_ago(28)))
        await e.sales(*[sale(regular, f"INV-R{i}", days_ago(5 + 10 * i)) for i in range(5)])
        await e.wait_for_segments(newcomer, ["New Customer"])
        await e.wait_applied(6)
        assert await e.segment_names(regular) == []
        # The default segments' first backfills are done before the clock moves (one still queued would
        # evaluate as of the new time, and its exits would carry its own reason, not the sweep's).
        await eventually(lambda: _no_open_jobs(e), timeout_s=30, what="initial backfills done")

        e.clock.advance(timedelta(days=2))
        await e.sweep()
        assert await e.segment_names(newcomer) == []
        latest = (await e.history(newcomer))[0]
        assert (latest["action"], latest["reason"]) == ("exited", "time_passed")

        e.clock.advance(timedelta(days=60))
        job = await e.sweep()
        assert job["entered"] == 1
        body = await e.get(f"/v1/customers/{regular}/segments")
        assert body["segments"] == [{
            "segment_id": "at-risk", "name": "At-Risk", "date_assigned": "2026-08-16", "assigned_by": "automatic",
            "notes": "0 purchases in the last 60 days against 5 in the 180 days before (0% of the usual rate)"
                     " (rule: purchase rate at most 50% of the 180 days before, with at least 3 purchases then)",
        }]
        assert [(h["action"], h["reason"]) for h in await e.history(regular)] == [("entered", "time_passed")]
        announced = await e.latest_announcement(regular, at_least=3)
        assert [s.segment_id for s in announced.segments] == ["at-risk"]

        again = await e.sweep()
        assert (again["entered"], again["exited"], again["customers_changed"]) == (0, 0, 0)


async def test_rule_change_is_previewed_then_backfilled_and_versioned(stack: Stack, topics: str,
                                                                      isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        counts = {"C-two": 2, "C-three": 3, "C-five": 5}
        await e.sales(*[sale(c, f"INV-{c}-{i}", days_ago(1 + i)) for c, n in counts.items() for i in range(n)])
        await e.wait_for_segments("C-five", ["Frequent Buyer"])
        await e.wait_applied(10)

        three = {"purchase_frequency": {"min_purchases": 3, "window_days": 30}}
        preview = await e.call("POST", "/v1/segments/frequent-buyer/preview", json={"rule": three})
        assert preview["matching"] == 2
        assert preview["would_enter"] == {"count": 1, "customers": [
            {"customer_id": "C-three", "notes": "3 purchases in the last 30 days (rule: at least 3)"}]}
        assert preview["would_leave"]["count"] == 0
        six = await e.call("POST", "/v1/segments/frequent-buyer/preview",
                           json={"rule": {"purchase_frequency": {"min_purchases": 6, "window_days": 30}}})
        assert [c["customer_id"] for c in six["would_leave"]["customers"]] == ["C-five"]
        assert await e.segment_names("C-three") == [], "a preview changes nothing"

        put = await e.call("PUT", "/v1/segments/frequent-buyer", expect=200, json={
            "name": "Frequent Buyer", "description": "3 in 30 days", "rule": three})
        assert (put["outcome"], put["version"], put["backfill"]["segment_version"]) == ("updated", 2, 2)
        done = await e.run_job(put["backfill"])
        assert (done["entered"], done["exited"], done["progress"]) == (1, 0, 1.0)
        assert (done["evaluated"], done["total"], done["processed"]) == (3, 2, 2)  # C-five's notes changed too
        history = await e.history("C-three")
        assert [(h["action"], h["reason"], h["segment_version"]) for h in history] == [
            ("entered", "rule_changed", 2)]
        body = await e.get("/v1/customers/C-five/segments")
        assert body["segments"][0]["notes"] == "5 purchases in the last 30 days (rule: at least 3)"

        same = await e.call("PUT", "/v1/segments/frequent-buyer", expect=200, json={
            "name": "Frequent Buyer", "description": "3 in 30 days", "rule": three})
        assert (same["outcome"], same["version"]) == ("unchanged", 2)
        versions = await e.get("/v1/segments/frequent-buyer/versions")
        assert [v["version"] for v in versions["items"]] == [2, 1]
        progress = await e.get(f"/v1/segments/frequent-buyer/backfills/{put['backfill']['job_id']}")
        assert progress["status"] == "done"

        bad = await e.call("PUT", "/v1/segments/frequent-buyer", expect=422, json={
            "name": "Frequent Buyer", "rule": {"all": [{"total_spend": {"min": "ten dollars"}}]}})
        assert "rule.all[0].total_spend.min" in bad["detail"]
        assert bad["errors"][0]["field"] == "rule.all[0].total_spend.min"


async def test_a_backfill_racing_with_events_ends_where_a_full_recompute_does(stack: Stack, topics: str,
                                                                               isolation: str) -> None:
    async with engine(stack, topics, isolation, backfill_chunk_size=3) as e:
        customers = [f"C-race-{i:02d}" for i in range(40)]
        first = [sale(c, f"INV-{c}-{k}", days_ago(1 + k)) for i, c in enumerate(customers) for k in range(i % 5)]
        await e.sales(*first)
        await e.wait_applied(len(first))

        # The rule changes; while its backfill runs (3 customers per transaction), more purchases arrive.
        put = await e.call("PUT", "/v1/segments/frequent-buyer", expect=200, json={
            "name": "Frequent Buyer", "rule": {"purchase_frequency": {"min_purchases": 3, "window_days": 30}}})
        more = [sale(c, f"INV-{c}-late", days_ago(0.1)) for c in customers[::2]]
        await e.sales(*more)
        await e.run_job(put["backfill"])
        await e.wait_applied(len(first) + len(more))

        expected = {c: (i % 5 + (1 if i % 2 == 0 else 0)) >= 3 for i, c in enumerate(customers)}
        members = await e.get("/v1/segments/frequent-buyer/members", limit=100)
        assert {m["customer_id"] for m in members["items"]} == {c for c, inside in expected.items() if inside}
        sweep = await e.sweep()
        assert (sweep["entered"], sweep["exited"], sweep["customers_changed"]) == (0, 0, 0)

        # The last announcement of every customer is its list as it stands.
        latest: dict[str, list[str]] = {}
        for event in sorted(await e.all_announcements(), key=lambda ev: ev.version):
            latest[event.customer_id] = [s.segment_id for s in event.segments]
        for c, inside in expected.items():
            assert ("frequent-buyer" in latest.get(c, [])) == inside, (c, latest.get(c))


async def test_deleting_a_segment_removes_its_members_with_a_reason(stack: Stack, topics: str,
                                                                    isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        await e.sales(*[sale("C-del", f"INV-D{i}", days_ago(i), "400.00") for i in range(4)])
        await e.wait_for_segments("C-del", ["Frequent Buyer", "High Value"])
        await e.call("POST", "/v1/segments/high-value/members", json={"customer_id": "C-hand", "notes": "met in store"})

        deleted = await e.call("DELETE", "/v1/segments/high-value")
        assert deleted["members_removed"] == 2
        assert await e.segment_names("C-del") == ["Frequent Buyer"]
        assert await e.segment_names("C-hand") == []
        assert (await e.history("C-hand"))[0]["reason"] == "segment_deleted"
        assert (await e.history("C-del"))[0]["reason"] == "segment_deleted"
        announced = await e.latest_announcement("C-del", at_least=4)
        assert [s.segment_id for s in announced.segments] == ["frequent-buyer"]
        await e.call("GET", "/v1/segments/high-value", expect=404)


async def test_bad_sales_messages_are_dead_lettered_and_the_consumer_goes_on(stack: Stack, topics: str,
                                                                             isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        good = sale("C-dlq", "INV-OK", days_ago(1))
        bad_version = {**sale("C-dlq", "INV-V2", days_ago(1)), "schema_version": 2}
        bad_money = {**sale("C-dlq", "INV-FLOAT", days_ago(1)), "total": 12.5}
        await e.send(t.POS_SALES, bad_version, bad_money, good)
        await e.wait_applied(1)
        dead = await read_topic(stack.kafka, topics + t.dlq(t.POS_SALES), at_least=2)
        reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dead)
        assert len(dead) == 2
        assert any("schema_version 2" in r for r in reasons) and any("total" in r for r in reasons)
        assert {orjson.loads(r.value)["invoice_number"] for r in dead} == {"INV-V2", "INV-FLOAT"}
        rows = await e.db("SELECT invoice_number FROM invoices")
        assert [r["invoice_number"] for r in rows] == ["INV-OK"]


async def _no_open_jobs(e: Engine) -> bool:
    rows = await e.db("SELECT count(*) AS n FROM evaluation_jobs WHERE status IN ('pending', 'running')")
    return rows[0]["n"] == 0
