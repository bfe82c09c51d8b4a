"""A customer's Coupon Usage History: newest first by time used whatever order the events arrived in,
cursor-paginated without gaps or repeats, reversed ones marked."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tests.helpers import eventually
from tests.integration.coupons.conftest import Ledger, redeemed, reversal


async def test_pages_are_newest_first_whatever_the_arrival_order(ledger: Ledger) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    await ledger.coupon("SAVE", discount_type="amount", discount_value="5.00", currency="USD")
    base = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    used = [base + timedelta(hours=rng.randrange(0, 24 * 90)) for _ in range(11)]
    used[3] = used[4]  # two redemptions at the same instant: the order between them is still stable
    events = [redeemed(f"INV-{i:02d}", "SAVE", "C-PAGES", at=at) for i, at in enumerate(used)]
    events.append(redeemed("INV-OTHER", "SAVE", "C-SOMEONE-ELSE", at=base))
    rng.shuffle(events)
    await ledger.send_coupons(*events)
    await ledger.send_coupons(reversal("INV-05", "SAVE", "C-PAGES"))

    async def all_there() -> bool:
        rows = await ledger.sql("SELECT count(*) AS n FROM redemption_reversals")
        return rows[0]["n"] == 1 and len(await ledger.sql("SELECT 1 FROM redemptions")) == 12

    await eventually(all_there, what="every redemption recorded")

    items, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = await ledger.call("GET", "/v1/customers/C-PAGES/coupon-redemptions", params=params)
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(items) == 11
    assert len({i["redemption_id"] for i in items}) == 11
    times = [datetime.fromisoformat(i["used_at"]) for i in items]
    assert times == sorted(times, reverse=True)
    assert sorted(times) == sorted(used)
    assert [i["invoice_number"] for i in items if i["status"] == "reversed"] == ["INV-05"]
    assert all(i["customer_id"] == "C-PAGES" for i in items)
    assert all(datetime.fromisoformat(i["used_at"]).utcoffset() in (timedelta(hours=-4), timedelta(hours=-5))
               for i in items), "in the business time zone (America/New_York)"

    capped = await ledger.call("GET", "/v1/customers/C-PAGES/coupon-redemptions", params={"limit": 10_000})
    assert len(capped["items"]) == 11
    bad = await ledger.http.get("/v1/customers/C-PAGES/coupon-redemptions", params={"cursor": "garbage"},
                                headers=ledger.auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    unknown = await ledger.call("GET", "/v1/customers/C-NOBODY/coupon-redemptions")
    assert unknown == {"items": [], "next_cursor": None}
    bad_id = await ledger.http.get("/v1/customers/bad%20id/coupon-redemptions", headers=ledger.auth)
    assert bad_id.status_code == 422
