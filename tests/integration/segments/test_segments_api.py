"""segment_engine's management API on real Kafka and Postgres: manual assignment and exclusions, members
pagination, segments as code, defaults loaded once, validation and scopes."""

from __future__ import annotations

from datetime import timedelta

from shared.auth import hash_key
from tests.conftest import Stack
from tests.integration.segments.support import days_ago, engine, sale


async def test_manual_add_is_sticky_and_manual_removal_is_an_exclusion(stack: Stack, topics: str,
                                                                       isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        await e.sales(*[sale("C-auto", f"INV-A{i}", days_ago(i)) for i in range(4)])
        await e.wait_for_segments("C-auto", ["Frequent Buyer"])

        # Removing a rule-based member excludes it: rules never bring it back until the exclusion is cleared.
        removed = await e.call("DELETE", "/v1/segments/frequent-buyer/members/C-auto")
        assert (removed["member"], removed["excluded"], removed["rule_matches"]) == (False, True, True)
        assert await e.segment_names("C-auto") == []
        await e.sales(sale("C-auto", "INV-A9", days_ago(0.2)))
        await e.wait_applied(5)
        await e.sweep()
        assert await e.segment_names("C-auto") == []
        excluded = await e.get("/v1/segments/frequent-buyer/exclusions")
        assert [i["customer_id"] for i in excluded["items"]] == ["C-auto"]
        again = await e.call("DELETE", "/v1/segments/frequent-buyer/members/C-auto")
        assert again["excluded"] is True, "removing an excluded customer again changes nothing"

        cleared = await e.call("DELETE", "/v1/segments/frequent-buyer/exclusions/C-auto")
        assert (cleared["member"], cleared["assigned_by"], cleared["date_assigned"]) == (True, "automatic",
                                                                                         "2026-06-15")
        assert [(h["action"], h["reason"]) for h in await e.history("C-auto")] == [
            ("entered", "exclusion_cleared"), ("exited", "manual_removal"), ("entered", "rule_matched")]
        await e.call("DELETE", "/v1/segments/frequent-buyer/exclusions/C-auto", expect=404)

        # A manual member stays whatever the rules say, with staff's note; a sweep does not remove it.
        added = await e.call("POST", "/v1/segments/frequent-buyer/members", expect=201,
                             json={"customer_id": "C-hand", "notes": "Buys for the whole team"})
        assert (added["member"], added["assigned_by"], added["notes"]) == (True, "manual", "Buys for the whole team")
        e.clock.advance(timedelta(days=1))
        await e.sweep()
        body = await e.get("/v1/customers/C-hand/segments")
        assert body["segments"] == [{"segment_id": "frequent-buyer", "name": "Frequent Buyer",
                                     "date_assigned": "2026-06-15", "assigned_by": "manual",
                                     "notes": "Buys for the whole team"}]
        fb = next(ev for ev in body["evaluations"] if ev["segment_id"] == "frequent-buyer")
        assert fb["rule_matches"] is False
        assert fb["explanation"] == "0 purchases in the last 30 days (rule: at least 4)"
        announced = await e.latest_announcement("C-hand", at_least=4)
        assert [(s.assigned_by.value, s.notes) for s in announced.segments] == [("manual", "Buys for the whole team")]

        # Adding an automatic member by hand makes it manual without restarting its membership.
        made_manual = await e.call("POST", "/v1/segments/frequent-buyer/members", expect=200,
                                   json={"customer_id": "C-auto", "notes": "keep"})
        assert (made_manual["assigned_by"], made_manual["date_assigned"]) == ("manual", "2026-06-15")

        # Removing a manual member whose rule does not match: it leaves, no exclusion.
        gone = await e.call("DELETE", "/v1/segments/frequent-buyer/members/C-hand")
        assert (gone["member"], gone["excluded"]) == (False, False)
        await e.call("DELETE", "/v1/segments/frequent-buyer/members/C-hand", expect=404)
        await e.call("POST", "/v1/segments/nope/members", expect=404, json={"customer_id": "C-1"})
        await e.call("DELETE", "/v1/segments/frequent-buyer/members/bad%20id", expect=422)


async def test_members_are_paginated_and_history_too(stack: Stack, topics: str, isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        ids = [f"C-page-{i:02d}" for i in range(7)]
        for cid in ids:
            await e.call("POST", "/v1/segments/vip/members", json={"customer_id": cid, "notes": "x"})
        seen, cursor = [], None
        while True:
            page = await e.get("/v1/segments/vip/members", limit=3, **({"cursor": cursor} if cursor else {}))
            seen += [i["customer_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids
        await e.call("GET", "/v1/segments/vip/members?limit=501", expect=422)
        await e.call("GET", "/v1/segments/vip/members?cursor=%%%", expect=400)
        segment = await e.get("/v1/segments/vip")
        assert segment["member_count"] == 7

        for n in range(3):
            await e.call("POST", "/v1/segments/vip/members", json={"customer_id": "C-page-00", "notes": f"n{n}"})
        first = await e.get("/v1/customers/C-page-00/segments/history", limit=2)
        rest = await e.get("/v1/customers/C-page-00/segments/history", cursor=first["next_cursor"])
        notes = [h["notes"] for h in first["items"] + rest["items"]]
        assert notes == ["n2", "n1", "n0", "x"]


async def test_segments_as_code_are_idempotent_and_defaults_load_once(stack: Stack, topics: str,
                                                                      isolation: str) -> None:
    document = """
segments:
  - segment_id: footwear-fans
    name: Footwear Fans
    description: Two footwear purchases in 180 days, at our flagship
    rule:
      all:
        - product_categories: {any_of: [Footwear], min_purchases: 2, window_days: 180}
        - location: {most_frequent_store_in: [S-001], window_days: 365}
  - segment_id: vip
    name: VIP
    rule: {loyalty_tier: {in: [Platinum]}}
"""
    async with engine(stack, topics, isolation, keep_schema=True) as e:
        listed = await e.get("/v1/segments")
        assert [s["segment_id"] for s in listed["items"]] == ["at-risk", "frequent-buyer", "high-value",
                                                              "new-customer", "vip"]
        headers = {**e.headers, "Content-Type": "application/yaml"}
        first = (await e.http.post("/v1/segments/apply", content=document, headers=headers)).json()
        assert [(r["segment_id"], r["outcome"], r["version"]) for r in first["results"]] == [
            ("footwear-fans", "created", 1), ("vip", "updated", 2)]
        second = (await e.http.post("/v1/segments/apply", content=document, headers=headers)).json()
        assert [(r["outcome"], r["version"]) for r in second["results"]] == [("unchanged", 1), ("unchanged", 2)]
        await e.call("DELETE", "/v1/segments/at-risk")

        bad = await e.http.post("/v1/segments/apply", headers=headers,
                                content="segments:\n  - segment_id: Bad Id\n    name: x\n    rule: {signup: {}}\n")
        assert bad.status_code == 422
        fields = [err["field"] for err in bad.json()["errors"]]
        assert fields == ["segments[0].segment_id", "segments[0].rule.signup"]

        await e.sales(sale("C-shoes", "INV-S1", days_ago(3)), sale("C-shoes", "INV-S2", days_ago(2)))
        body = await e.wait_for_segments("C-shoes", ["Footwear Fans"])
        assert body["segments"][0]["notes"] == (
            "2 purchases in Footwear in the last 180 days (rule: at least 2 purchases in Footwear);"
            " Shops most often at S-001 (2 of 2 purchases in the last 365 days)"
            " (rule: most frequent store in S-001)")

    # A restart does not bring back what staff deleted, nor undo their edits.
    async with engine(stack, topics, isolation) as e:
        listed = await e.get("/v1/segments")
        assert {s["segment_id"]: s["version"] for s in listed["items"]} == {
            "footwear-fans": 1, "frequent-buyer": 1, "high-value": 1, "new-customer": 1, "vip": 2}


async def test_validation_and_scopes(stack: Stack, topics: str, isolation: str) -> None:
    reader = "read-only-key-" + isolation
    async with engine(stack, topics, isolation, defaults=False, api_keys=f"{hash_key(reader)}=read") as e:
        assert (await e.get("/v1/segments"))["items"] == []
        anonymous = await e.http.get("/v1/segments")
        assert anonymous.status_code == 401
        as_reader = {"Authorization": f"Bearer {reader}"}
        assert (await e.http.get("/v1/segments", headers=as_reader)).status_code == 200
        forbidden = await e.http.put("/v1/segments/x", headers=as_reader, json={"name": "X", "rule": {}})
        assert forbidden.status_code == 403
        assert (await e.http.post("/v1/segments/sweep", headers=as_reader)).status_code == 403
        await e.call("PUT", "/v1/segments/Not_Lowercase", expect=422, json={"name": "x", "rule": {"signup": {}}})
        await e.call("PUT", "/v1/segments/sweep", expect=(405, 422), json={"name": "x", "rule": {}})
        unknown = await e.call("PUT", "/v1/segments/x", expect=422, json={"name": "X", "rule": {"spend": {}}})
        assert "unknown criterion 'spend'" in unknown["detail"]
        created = await e.call("PUT", "/v1/segments/x", expect=201, json={
            "name": "X", "rule": {"not": {"loyalty_tier": {"in": ["Gold"]}}}})
        assert created["version"] == 1 and created["backfill"]["status"] in ("pending", "running", "done")
        clash = await e.call("PUT", "/v1/segments/y", expect=409, json={"name": "x", "rule": {"signup": {
            "within_days": 3}}})
        assert "already named" in clash["detail"]
        await e.call("POST", "/v1/segments/x/preview", expect=422, json={"rule": {"all": []}})
        await e.call("POST", "/v1/segments/x/members", expect=422, json={"customer_id": "C 1"})
        await e.call("GET", "/v1/customers/C%201/segments", expect=422)
        await e.call("DELETE", "/v1/segments/nope", expect=404)
        unknown_customer = await e.get("/v1/customers/C-never/segments")
        assert (unknown_customer["known"], unknown_customer["segments"]) == (False, [])
        response = await e.http.get("/v1/segments", headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
