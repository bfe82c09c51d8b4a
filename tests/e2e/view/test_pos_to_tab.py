"""End to end through the four running services: POS and CRM events on the REAL topics (unique customer
ids) -> segment_engine, redemption_ledger, giftcard_ledger -> their domain events -> marketing_view ->
the JSON tab and the page in headless Chromium."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx

from shared.contracts import topics
from shared.contracts.pos import CouponRedeemed, CustomerRegistered, GiftCardActivated, SaleCompleted, SaleLine
from tests.conftest import Stack
from tests.e2e.view.browser import Grids, dump_dom, screenshot
from tests.helpers import eventually, publish

ARTIFACTS = Path(__file__).parent / "artifacts"


async def test_pos_events_reach_the_marketing_tab(stack: Stack) -> None:
    assert stack.services_running, "the e2e tests need the four services running (make up)"
    tag = uuid.uuid4().hex[:10].upper()
    customer = f"C-E2EV-{tag}"
    code = f"E2E{tag}"
    card_number = "60" + "".join(random.choice("0123456789") for _ in range(14))
    env = stack.env
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(f"{env['REDEMPTION_LEDGER_URL']}/v1/coupons", headers=auth, json={
            "code": code, "name": "E2E 10% off", "discount_type": "percent", "discount_value": "10",
            "valid_from": "2020-01-01"})
        assert created.status_code == 201, created.text

        t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        invoices = [f"INV-E2EV-{tag}-1", f"INV-E2EV-{tag}-2"]
        registered = CustomerRegistered(event_id=uuid.uuid4(), occurred_at=t0, customer_id=customer,
                                        registered_at=t0, home_store_id="S-001", loyalty_tier=None)
        sales = [SaleCompleted(
            event_id=uuid.uuid4(), occurred_at=t0 + timedelta(seconds=n), store_id="S-001", register_id="R-01",
            invoice_number=invoice, customer_id=customer, currency="USD",
            lines=[SaleLine(sku="SKU-1", category="Footwear", quantity=1, unit_price=Decimal("102.00"),
                            line_total=Decimal("102.00"))],
            subtotal=Decimal("102.00"), discount_total=Decimal("10.20"), tax_total=Decimal("0.00"),
            total=Decimal("91.80"), coupon_codes=[code], tenders=[]) for n, invoice in enumerate(invoices)]
        # the newer redemption is published first: the grid orders by time used, not by arrival
        redemptions = [CouponRedeemed(
            event_id=uuid.uuid4(), occurred_at=t0 + timedelta(seconds=n), store_id="S-001", register_id="R-01",
            invoice_number=invoice, customer_id=customer, coupon_code=code, discount_amount=Decimal("10.20"),
            currency="USD") for n, invoice in reversed(list(enumerate(invoices)))]
        activated = GiftCardActivated(
            event_id=uuid.uuid4(), occurred_at=t0, store_id="S-001", card_number=card_number,
            amount=Decimal("50.00"), currency="USD", customer_id=customer,
            expires_on=date.today() + timedelta(days=365), invoice_number=invoices[0])
        await publish(stack.kafka, topics.CRM_CUSTOMERS, [(customer.encode(), registered)])
        await publish(stack.kafka, topics.POS_SALES, [(customer.encode(), s) for s in sales])
        await publish(stack.kafka, topics.POS_COUPON_REDEMPTIONS, [(customer.encode(), r) for r in redemptions])
        await publish(stack.kafka, topics.POS_GIFTCARD_ACTIVITY, [(card_number.encode(), activated)])

        url = f"{env['MARKETING_VIEW_URL']}/v1/customers/{customer}/marketing"

        async def tab_complete() -> dict:
            response = await client.get(url, headers=auth)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["segments"], "segments from segment_engine"
            assert len(body["coupon_usage"]["items"]) == 2, "redemptions from redemption_ledger"
            assert body["gift_cards"], "the card from giftcard_ledger"
            assert body["insights"]["coupon_price_sensitivity"], "price sensitivity from redemption_ledger"
            return body

        body = await eventually(tab_complete, timeout_s=60, interval_s=0.5, what="the tab shows the POS events")

    assert "New Customer" in [s["name"] for s in body["segments"]]
    items = body["coupon_usage"]["items"]
    assert [i["invoice_number"] for i in items] == [invoices[1], invoices[0]], "newest first"
    assert all(i["coupon_code"] == code and i["coupon_name"] == "E2E 10% off" for i in items)
    assert items[0]["discount"]["display"] == "10% ($10.20)"
    assert items[0]["invoice_url"].endswith(invoices[1])
    (gift_card,) = body["gift_cards"]
    assert gift_card["last4"] == card_number[-4:]
    assert gift_card["card_number_masked"].endswith(card_number[-4:])
    assert card_number not in str(body), "the full card number never reaches the tab"
    assert gift_card["current_balance"] == "50.00" and gift_card["status"] == "active"
    assert body["insights"]["coupon_price_sensitivity"]["purchases_with_coupon"] >= 1

    page = f"{env['MARKETING_VIEW_URL']}/customers/{customer}/marketing?key={quote(stack.api_key, safe='')}"
    dom = Grids(await dump_dom(page))
    assert [r[4] for r in dom.rows["coupons-grid"]] == [invoices[1], invoices[0]]
    assert "New Customer" in [r[0] for r in dom.rows["segments-grid"]]
    assert dom.rows["gift-cards-grid"][0][0].endswith(card_number[-4:])
    assert dom.rows["gift-cards-grid"][0][3] == "Active"
    await screenshot(page, ARTIFACTS / "pos_to_tab.png")
