"""The applying phase of a backfill (services/segment_engine/backfill_sql.py) on real Kafka and Postgres:
entries, exits, changed explanations, manual members and exclusions, in chunks of two customers, end where the
per-customer Python evaluation says; the announcements built in SQL are the bytes pydantic writes for the
same lists."""

from __future__ import annotations

from typing import Any

from shared.contracts import topics as t
from shared.contracts.codec import decode, encode
from shared.contracts.domain import CustomerSegmentsChanged, SegmentMembership
from tests.conftest import Stack
from tests.helpers import read_topic
from tests.integration.segments.support import days_ago, engine, registered, sale

SPEND = "big-spenders"
NAME = 'Big "Spenders" \\ ✓ — à l\'œil'
OLD_RULE = {"total_spend": {"min": "100.00", "window_days": 365}}
NEW_RULE = {"any": [{"total_spend": {"min": "200.00", "window_days": 30}}, {"loyalty_tier": {"in": ["Gold"]}}]}
NOTE = 'Line "one"\n\ttab \\ é ✓ \u0001 </script>'


async def test_backfill_applies_in_chunks_as_the_python_path_and_announces_pydantic_bytes(
        stack: Stack, topics: str, isolation: str) -> None:
    async with engine(stack, topics, isolation, defaults=False, backfill_chunk_size=2) as e:
        await e.call("PUT", "/v1/segments/gold", expect=201, json={
            "name": "Ämber gold", "rule": {"loyalty_tier": {"in": ["Gold"]}}})
        await e.call("PUT", f"/v1/segments/{SPEND}", expect=201, json={"name": NAME, "rule": OLD_RULE})
        spent = {"C-both": "300.00", "C-leaves": "150.00", "C-hand-leaves": "150.00", "C-excl": "300.00",
                 "C-excl-leaves": "150.00", "C-quiet": "20.00"}
        await e.sales(*[sale(c, f"INV-{c}", days_ago(1), total) for c, total in spent.items()])
        await e.crm(registered("C-gold", days_ago(400), tier="Gold"), registered("C-hand", days_ago(400)))
        await e.wait_applied(len(spent) + 2)
        await e.wait_for_segments("C-gold", ["Ämber gold"])
        await e.wait_for_segments("C-excl-leaves", [NAME])

        await e.call("POST", f"/v1/segments/{SPEND}/members", json={"customer_id": "C-hand", "notes": "VIP"})
        await e.call("POST", f"/v1/segments/{SPEND}/members", json={"customer_id": "C-hand-leaves", "notes": NOTE})
        await e.call("POST", "/v1/segments/gold/members", json={"customer_id": "C-gold", "notes": NOTE})
        for c in ("C-excl", "C-excl-leaves"):
            await e.call("DELETE", f"/v1/segments/{SPEND}/members/{c}")
        before = {r["customer_id"]: r["segments_version"]
                  for r in await e.db("SELECT customer_id, segments_version FROM customers")}

        put = await e.call("PUT", f"/v1/segments/{SPEND}", expect=200, json={"name": NAME, "rule": NEW_RULE})
        job = await e.run_job(put["backfill"])
        # C-gold enters, C-leaves exits, C-both's explanation changes; manual and excluded pairs change
        # their stored verdict silently (C-hand-leaves, C-excl, C-excl-leaves).
        assert (job["entered"], job["exited"], job["customers_changed"]) == (1, 1, 3)
        assert (job["total"], job["processed"], job["progress"]) == (6, 6, 1.0)

        customers = sorted(before)
        views: dict[str, dict[str, Any]] = {}
        for c in customers:
            body = await e.get(f"/v1/customers/{c}/segments")
            views[c] = body
            ev = next(v for v in body["evaluations"] if v["segment_id"] == SPEND)
            row = next((m for m in await e.db(
                "SELECT m.* FROM memberships m WHERE segment_id = $1 AND customer_id = $2", SPEND, c)), None)
            # The stored verdict and explanation are the Python path's, now.
            assert (row["rule_match"] if row else False) == ev["rule_matches"], c
            if ev["rule_matches"]:
                assert row["match_notes"] == ev["explanation"], c
            member = bool(row) and bool(row["manual"] or (row["rule_match"] and not row["excluded"]))
            assert ev["member"] == member, c
        names = {c: sorted(s["segment_id"] for s in views[c]["segments"]) for c in customers}
        assert names == {
            "C-both": [SPEND], "C-leaves": [], "C-hand": [SPEND], "C-hand-leaves": [SPEND], "C-excl": [],
            "C-excl-leaves": [], "C-gold": [SPEND, "gold"], "C-quiet": [],
        }
        excluded = await e.get(f"/v1/segments/{SPEND}/exclusions")  # exclusions stand, matching or not
        assert [i["customer_id"] for i in excluded["items"]] == ["C-excl", "C-excl-leaves"]

        changes = {c: [(h["action"], h["reason"], h["segment_version"]) for h in await e.history(c)
                       if h["segment_id"] == SPEND and h["reason"] == "rule_changed"] for c in customers}
        assert {c: h for c, h in changes.items() if h} == {
            "C-gold": [("entered", "rule_changed", 2)], "C-leaves": [("exited", "rule_changed", 2)]}

        # Announcements: the backfill's, one per changed customer with its bumped version, are the exact bytes
        # pydantic writes for the model they decode to, and carry the complete list as the API reads it.
        records = await read_topic(stack.kafka, e.prefix + t.SEGMENT_MEMBERSHIPS, at_least=1)
        after = {r["customer_id"]: r["segments_version"]
                 for r in await e.db("SELECT customer_id, segments_version FROM customers")}
        latest: dict[str, tuple[CustomerSegmentsChanged, bytes]] = {}
        for record in records:
            event = decode(t.SEGMENT_MEMBERSHIPS, record.value)
            assert record.key == event.customer_id.encode()
            if event.customer_id not in latest or event.version > latest[event.customer_id][0].version:
                latest[event.customer_id] = (event, record.value)
        announced = sorted(c for c in customers if after[c] > before[c] and latest[c][0].version == after[c])
        assert announced == ["C-both", "C-gold", "C-leaves"]
        for c in announced:
            event, raw = latest[c]
            assert encode(event) == raw, c
            assert event.occurred_at == e.clock.now()
            assert event.segments == [SegmentMembership.model_validate(s) for s in views[c]["segments"]], c
        gold = latest["C-gold"][0]
        assert [(s.segment_id, s.name, s.assigned_by.value, s.notes) for s in gold.segments] == sorted(
            [("gold", "Ämber gold", "manual", NOTE),
             (SPEND, NAME, "automatic", "Loyalty tier Gold (rule: tier Gold)")], key=lambda s: s[1])
        assert latest["C-leaves"][0].segments == []

        # Idempotent: a full recompute right after changes nothing.
        sweep = await e.sweep()
        assert (sweep["entered"], sweep["exited"], sweep["customers_changed"]) == (0, 0, 0)
