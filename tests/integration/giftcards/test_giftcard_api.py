"""The management API on real Postgres and Kafka: every verb, idempotency, pagination, clear 4xx, the full card
number shown once and stored nowhere."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.giftcard_ledger.cardnumbers import luhn_valid
from shared.clock import FixedClock
from shared.contracts import topics as t
from tests.conftest import Stack
from tests.integration.giftcards.conftest import Ledger, card_number, start_ledger


async def issue(ledger: Ledger, customer_id: str = "C-1", amount: str = "50.00", **extra: Any) -> dict[str, Any]:
    r = await ledger.post("/v1/gift-cards", {"customer_id": customer_id, "amount": amount, "currency": "USD", **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def everything_stored(ledger: Ledger) -> list[Any]:
    """Every value of every row of every table of the service's schema."""
    tables = await ledger.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", ledger.schema)
    values: list[Any] = []
    for table in tables:
        for row in await ledger.fetch(f'SELECT * FROM "{table["tablename"]}"'):
            values.extend(row.values())
    return values


def contains(values: list[Any], number: str) -> bool:
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)):
            if number.encode() in bytes(v):
                return True
        elif number in (orjson.dumps(v, default=str).decode() if isinstance(v, (dict, list)) else str(v)):
            return True
    return False


async def test_issue_shows_the_number_once_and_stores_it_nowhere(ledger: Ledger,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    key = uuid.uuid4().hex
    body = {"customer_id": "C-7", "amount": "50.00", "currency": "USD", "expires_on": "2027-01-02"}
    r = await ledger.post("/v1/gift-cards", body, key=key)
    assert r.status_code == 201, r.text
    card = r.json()
    number = card["card_number"]
    assert len(number) == 16 and number.isdigit() and luhn_valid(number)
    assert card["card_id"].startswith("gc_") and number not in card["card_id"]
    assert card["last4"] == number[-4:] and card["card_number_masked"] == "•••• •••• •••• " + number[-4:]
    assert (card["current_balance"], card["original_balance"], card["status"]) == ("50.00", "50.00", "active")
    assert card["issue_date"] == "2026-03-10" and card["expiration_date"] == "2027-01-02"

    replay = await ledger.post("/v1/gift-cards", body, key=key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == {**card, "card_number": None}, "same answer, but a generated number is never shown again"
    assert len(await ledger.fetch("SELECT * FROM cards")) == 1

    other_body = await ledger.post("/v1/gift-cards", {**body, "amount": "60.00"}, key=key)
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.json()["detail"]

    shown = [await ledger.http.get(f"/v1/gift-cards/{card['card_id']}", headers=ledger.auth),
             await ledger.http.get(f"/v1/gift-cards/{card['card_id']}/transactions", headers=ledger.auth),
             await ledger.http.get("/v1/customers/C-7/gift-cards", headers=ledger.auth),
             await ledger.http.get("/v1/gift-cards/expiring?within_days=400", headers=ledger.auth),
             await ledger.http.post("/v1/gift-cards/lookup", json={"card_number": number}, headers=ledger.auth)]
    assert all(s.status_code == 200 for s in shown) and all(number not in s.text for s in shown)
    assert shown[4].json()["card_id"] == card["card_id"]
    assert not contains(await everything_stored(ledger), number), "not in any table"
    records = await ledger.topic(t.GIFTCARD_CARDS, at_least=1)
    assert all(number.encode() not in r.value for r in records), "not on the internal topic"
    out, err = capsys.readouterr()
    assert number not in out and number not in err, "not in the logs"


async def test_a_supplied_number_is_kept_as_hmac_and_cannot_be_issued_twice(ledger: Ledger) -> None:
    number = "ab12CD34ef56"
    key = uuid.uuid4().hex
    body = {"customer_id": "C-1", "amount": "20.00", "currency": "USD", "card_number": number}
    first = await ledger.post("/v1/gift-cards", body, key=key)
    assert first.status_code == 201 and first.json()["card_number"] == number and first.json()["last4"] == "EF56"
    replay = await ledger.post("/v1/gift-cards", body, key=key)
    assert replay.json() == first.json(), "the client sent the number again: the replay may repeat it"
    again = await ledger.post("/v1/gift-cards", {**body, "card_number": number.upper()})
    assert again.status_code == 409 and again.json()["reason"] == "card_already_active"
    found = await ledger.http.post("/v1/gift-cards/lookup", json={"card_number": number.lower()}, headers=ledger.auth)
    assert found.status_code == 200 and found.json()["card_id"] == first.json()["card_id"]
    assert not contains(await everything_stored(ledger), number.upper())
    assert not contains(await everything_stored(ledger), number)


async def test_every_write_verb_moves_the_card_and_publishes_it(ledger: Ledger) -> None:
    card = await issue(ledger, "C-1", "50.00")
    cid = card["card_id"]
    steps = [
        ("reload", {"amount": "25.00", "reason": "birthday"}, "75.00"),
        ("redeem", {"amount": "30.00", "invoice_number": "INV-77", "store_id": "S-9"}, "45.00"),
        ("adjust", {"amount": "-5.00", "reason": "correction", "note": "till error"}, "40.00"),
        ("adjust", {"amount": "2.50", "reason": "goodwill"}, "42.50"),
        ("assign", {"customer_id": "C-2", "reason": "gifted"}, "42.50"),
        ("expire", {"reason": "customer asked"}, "42.50"),
        ("deactivate", None, "42.50"),
    ]
    for verb, body, balance in steps:
        r = await ledger.post(f"/v1/gift-cards/{cid}/{verb}", body)
        assert r.status_code == 200, (verb, r.text)
        assert r.json()["current_balance"] == balance and r.json()["card_id"] == cid
    final = (await ledger.http.get(f"/v1/gift-cards/{cid}", headers=ledger.auth)).json()
    assert final["status"] == "deactivated" and final["state"] == "deactivated" and final["customer_id"] == "C-2"
    assert final["version"] == 8 and final["expired_at"] and final["deactivated_at"]
    assert await ledger.balance_consistent(cid) == Decimal("42.50")

    refused = await ledger.post(f"/v1/gift-cards/{cid}/reload", {"amount": "1.00"})
    assert refused.status_code == 409 and refused.json()["reason"] == "inactive_card"

    records = await ledger.topic(t.GIFTCARD_CARDS, at_least=8)
    bodies = [orjson.loads(r.value) for r in records]
    assert {r.key for r in records} == {cid.encode()}
    assert [b["version"] for b in bodies] == list(range(1, 9))
    assert [b["change"] for b in bodies] == ["issue", "reload", "redeem", "adjust", "adjust", "assign", "expire",
                                             "deactivate"]
    assigned = bodies[5]
    assert assigned["customer_id"] == "C-2" and assigned["previous_customer_id"] == "C-1"
    assert [b["state"] for b in bodies][-2:] == ["expired", "deactivated"]

    entries = await ledger.entries(cid)
    redeem = entries[2]
    assert (redeem["invoice_number"], redeem["store_id"], redeem["amount"]) == ("INV-77", "S-9", Decimal("-30.00"))
    assert entries[3]["reason"] == "correction: till error" and entries[5]["customer_id"] == "C-2"
    assert all(e["actor"].startswith("api:") and e["source"].startswith("idem:") for e in entries)


async def test_a_refusal_is_an_answer_the_key_remembers_and_nothing_is_half_written(ledger: Ledger) -> None:
    card = await issue(ledger, amount="10.00")
    cid = card["card_id"]
    key = uuid.uuid4().hex
    too_much = await ledger.post(f"/v1/gift-cards/{cid}/redeem", {"amount": "10.01"}, key=key)
    assert too_much.status_code == 409 and too_much.json()["reason"] == "insufficient_balance"
    assert "10.00" in too_much.json()["detail"]
    await ledger.post(f"/v1/gift-cards/{cid}/reload", {"amount": "5.00"})
    replay = await ledger.post(f"/v1/gift-cards/{cid}/redeem", {"amount": "10.01"}, key=key)
    assert replay.status_code == 409 and replay.json() == too_much.json(), "the same key gives the same answer"
    wrong_currency = await ledger.post(f"/v1/gift-cards/{cid}/redeem", {"amount": "1.00", "currency": "EUR"})
    assert wrong_currency.status_code == 409 and wrong_currency.json()["reason"] == "currency_mismatch"
    same_customer = await ledger.post(f"/v1/gift-cards/{cid}/assign", {"customer_id": "C-1"})
    assert same_customer.status_code == 409 and same_customer.json()["reason"] == "already_assigned"
    assert [e["entry_type"] for e in await ledger.entries(cid)] == ["issue", "reload"]
    assert await ledger.balance_consistent(cid) == Decimal("15.00")


@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": 10.5, "currency": "USD"}, 422, "amount"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "10.555", "currency": "USD"}, 422, "amount"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "0.00", "currency": "USD"}, 422, "amount"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "-5.00", "currency": "USD"}, 422, "amount"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "usd"}, 422, "currency"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "USD", "colour": "red"}, 422, "colour"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "USD", "card_number": "1234567"}, 422,
     "card_number"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "USD",
                        "card_number": "1234-5678-9012"}, 422, "card_number"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "USD", "expires_on": "2026-03-09"},
     422, "before the issue date"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5000000.00", "currency": "USD"}, 409, "at most"),
    ("/v1/gift-cards", {"customer_id": "", "amount": "5.00", "currency": "USD"}, 422, "customer_id"),
    ("/v1/gift-cards", None, 422, "body"),
    ("/v1/gift-cards/6034932528974821/reload", {"amount": "1.00"}, 422, "card_id"),
    ("/v1/gift-cards/gc_AAAAAAAAAAAAAAAAAAAAAA/reload", {"amount": "1.00"}, 404, "no gift card"),
    ("/v1/gift-cards/{card}/adjust", {"amount": "0.00", "reason": "correction"}, 422, "zero"),
    ("/v1/gift-cards/{card}/adjust", {"amount": "1.00", "reason": "because"}, 422, "reason"),
    ("/v1/gift-cards/{card}/adjust", {"amount": "1.00"}, 422, "reason"),
    ("/v1/gift-cards/{card}/reload", {"amount": "1e3"}, 422, "amount"),
    ("/v1/gift-cards/sweep", {"as_of": "2030-01-01T00:00:00Z"}, 422, "future"),
    ("/v1/gift-cards/sweep", {"as_of": "2026-01-01T00:00:00"}, 422, "as_of"),
    ("/v1/gift-cards/sweep", {"as_of": "0001-01-02T00:00:00Z"}, 422, "as_of"),
    ("/v1/gift-cards/{card}/reload", {"amount": "1.00", "reason": "nul\u0000byte"}, 422, "reason"),
    ("/v1/gift-cards", {"customer_id": "C-1", "amount": "5.00", "currency": "USD", "expires_on": "9999-12-31"},
     201, "9999-12-31"),
])
async def test_bad_requests_get_a_clear_4xx_and_change_nothing(ledger: Ledger, path: str, body: Any, status: int,
                                                               fragment: str) -> None:
    card = await issue(ledger)
    r = await ledger.post(path.format(card=card["card_id"]), body)
    assert r.status_code == status, r.text
    assert fragment in r.text
    if status >= 400:
        assert r.json()["detail"]
        assert len(await ledger.fetch("SELECT * FROM cards")) == 1, "nothing half-written"
        assert len(await ledger.fetch("SELECT * FROM ledger_entries")) == 1, "nothing half-written"
        assert (await ledger.fetch("SELECT version FROM cards"))[0]["version"] == 1


async def test_writes_need_an_idempotency_key_and_the_manage_scope(stack: Stack, topics: str, isolation: str,
                                                                   clock: FixedClock) -> None:
    reader = "reader-" + uuid.uuid4().hex
    entry = "sha256:" + hashlib.sha256(reader.encode()).hexdigest() + "=read"
    async with start_ledger(stack, topics, isolation, clock, api_keys=entry) as ledger:
        body = {"customer_id": "C-1", "amount": "5.00", "currency": "USD"}
        missing = await ledger.http.post("/v1/gift-cards", json=body, headers=ledger.auth)
        assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["detail"]
        anonymous = await ledger.http.post("/v1/gift-cards", json=body, headers={"Idempotency-Key": "k1"})
        assert anonymous.status_code == 401
        read_only = {"Authorization": f"Bearer {reader}", "Idempotency-Key": "k2"}
        forbidden = await ledger.http.post("/v1/gift-cards", json=body, headers=read_only)
        assert forbidden.status_code == 403 and "manage" in forbidden.json()["detail"]
        card = await issue(ledger)
        readable = await ledger.http.get(f"/v1/gift-cards/{card['card_id']}", headers=read_only)
        assert readable.status_code == 200
        assert len(await ledger.fetch("SELECT * FROM cards")) == 1


async def test_transactions_newest_first_in_pages(ledger: Ledger) -> None:
    card = await issue(ledger, amount="100.00")
    cid = card["card_id"]
    for i in range(6):
        assert (await ledger.post(f"/v1/gift-cards/{cid}/redeem", {"amount": f"{i + 1}.00"})).status_code == 200
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        r = await ledger.http.get(f"/v1/gift-cards/{cid}/transactions", params=params, headers=ledger.auth)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [e["seq"] for e in seen] == [7, 6, 5, 4, 3, 2, 1]
    assert [e["type"] for e in seen] == ["redeem"] * 6 + ["issue"]
    assert [e["balance_after"] for e in seen] == ["79.00", "85.00", "90.00", "94.00", "97.00", "99.00", "100.00"]
    assert seen[0]["amount"] == "-6.00"
    capped = await ledger.http.get(f"/v1/gift-cards/{cid}/transactions?limit=1000", headers=ledger.auth)
    assert capped.status_code == 422
    for cursor in ("nonsense!", "WyI5OTk5OTk5OTk5OTk5OTk5OTk5OTk5Il0", "WyItMSJd"):  # junk, ["9999...9"], ["-1"]
        bad = await ledger.http.get(f"/v1/gift-cards/{cid}/transactions?cursor={cursor}", headers=ledger.auth)
        assert bad.status_code == 422 and "cursor" in bad.json()["detail"]
    for path in ("/v1/customers/C-1/gift-cards", "/v1/gift-cards/expiring"):
        for cursor in ("WyJ4Il0", "WyIyMDI2LTAxLTAxIl0", "bm90IGpzb24"):  # ["x"], ["2026-01-01"], not json
            bad = await ledger.http.get(path, params={"cursor": cursor}, headers=ledger.auth)
            assert bad.status_code == 422 and "cursor" in bad.json()["detail"], (path, cursor, bad.text)
    unknown = await ledger.http.get("/v1/gift-cards/gc_BBBBBBBBBBBBBBBBBBBBBB/transactions", headers=ledger.auth)
    assert unknown.status_code == 404


async def test_a_customers_cards_and_reassignment(ledger: Ledger) -> None:
    ids = []
    for i in range(5):
        ledger.clock.advance(timedelta(minutes=1))
        ids.append((await issue(ledger, "C-50", f"{i + 1}.00"))["card_id"])
    moved = await ledger.post(f"/v1/gift-cards/{ids[0]}/assign", {"customer_id": "C-51"})
    assert moved.status_code == 200
    listed: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await ledger.http.get("/v1/customers/C-50/gift-cards", params=params, headers=ledger.auth)).json()
        listed += [c["card_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == ids[:0:-1], "newest first, without the card given away"
    other = (await ledger.http.get("/v1/customers/C-51/gift-cards", headers=ledger.auth)).json()
    assert [c["card_id"] for c in other["items"]] == [ids[0]]
    nobody = await ledger.http.get("/v1/customers/C-404/gift-cards", headers=ledger.auth)
    assert nobody.status_code == 200 and nobody.json()["items"] == []


async def test_expiring_report_lists_open_cards_with_a_balance(ledger: Ledger) -> None:
    today = date(2026, 3, 10)

    async def card(amount: str, days: int | None) -> str:
        extra = {"expires_on": (today + timedelta(days=days)).isoformat()} if days is not None else {}
        return (await issue(ledger, "C-9", amount, **extra))["card_id"]

    soon, later, never, drained, gone, last_day = (
        await card("5.00", 3), await card("5.00", 45), await card("5.00", None), await card("5.00", 10),
        await card("5.00", 5), await card("5.00", 30),
    )
    await ledger.post(f"/v1/gift-cards/{drained}/redeem", {"amount": "5.00"})
    await ledger.post(f"/v1/gift-cards/{gone}/deactivate", {})
    r = await ledger.http.get("/v1/gift-cards/expiring", params={"within_days": 30}, headers=ledger.auth)
    assert r.status_code == 200
    report = r.json()
    assert [c["card_id"] for c in report["items"]] == [soon, last_day]
    assert (report["from_date"], report["to_date"]) == ("2026-03-10", "2026-04-09")
    assert report["items"][0]["customer_id"] == "C-9" and report["items"][0]["current_balance"] == "5.00"
    wider = await ledger.http.get("/v1/gift-cards/expiring", params={"within_days": 60, "limit": 1},
                                  headers=ledger.auth)
    first = wider.json()
    second = (await ledger.http.get("/v1/gift-cards/expiring", params={
        "within_days": 60, "limit": 5, "cursor": first["next_cursor"]}, headers=ledger.auth)).json()
    assert [c["card_id"] for c in first["items"] + second["items"]] == [soon, last_day, later]
    assert never not in [c["card_id"] for c in second["items"]]
    assert (await ledger.http.get("/v1/gift-cards/expiring?within_days=-1", headers=ledger.auth)).status_code == 422


async def test_lookup_by_number_never_in_the_url(ledger: Ledger) -> None:
    number = card_number()
    card = await issue(ledger, card_number=number)
    found = await ledger.http.post("/v1/gift-cards/lookup", json={"card_number": number}, headers=ledger.auth)
    assert found.status_code == 200 and found.json()["card_id"] == card["card_id"] and number not in found.text
    missing = await ledger.http.post("/v1/gift-cards/lookup", json={"card_number": card_number()},
                                     headers=ledger.auth)
    assert missing.status_code == 404
    as_id = await ledger.http.get(f"/v1/gift-cards/{number}", headers=ledger.auth)
    assert as_id.status_code == 422, "a card number is never accepted as a card id"


async def test_concurrent_retries_with_one_key_apply_once_and_answer_alike(ledger: Ledger) -> None:
    card = await issue(ledger, amount="10.00")
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(ledger.post(f"/v1/gift-cards/{card['card_id']}/reload", {"amount": "5.00"},
                                                 key=key) for _ in range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1, "every retry gets the first answer"
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    assert [e["entry_type"] for e in await ledger.entries(card["card_id"])] == ["issue", "reload"]
    assert await ledger.balance_consistent(card["card_id"]) == Decimal("15.00")
