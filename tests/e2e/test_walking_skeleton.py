"""One event across the whole running stack: a CRM registration published by a plain Kafka client reaches
segment_engine, which emits through its outbox; marketing_view projects it; the read API shows it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import orjson

from shared.contracts import topics
from tests.conftest import Stack
from tests.helpers import eventually, publish

DEFAULT_TZ = "America/New_York"


async def test_a_registration_travels_from_kafka_to_the_read_api(stack: Stack) -> None:
    assert stack.services_running, "the e2e tests need the four services running (make up)"
    customer_id = f"C-E2E-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat()
    event = {
        "event_id": str(uuid.uuid4()), "event_type": "customer.registered", "schema_version": 1,
        "occurred_at": now, "store_id": None, "customer_id": customer_id, "registered_at": now,
        "home_store_id": "S-001", "loyalty_tier": None,
    }
    await publish(stack.kafka, topics.CRM_CUSTOMERS, [(customer_id.encode(), orjson.dumps(event))])

    url = f"{stack.env['MARKETING_VIEW_URL']}/v1/customers/{customer_id}/marketing"
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(timeout=5) as client:

        async def tab_shows_new_customer() -> dict:
            response = await client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert [s["name"] for s in body["segments"]] == ["New Customer"], body
            return body

        body = await eventually(tab_shows_new_customer, timeout_s=30, what="the tab shows the new customer")
        unauthenticated = await client.get(url)

    assert set(body) >= {"customer_id", "as_of", "segments", "coupon_usage", "gift_cards"}
    assert body["customer_id"] == customer_id
    assert body["coupon_usage"] == {"items": [], "next_cursor": None}
    assert body["gift_cards"] == []
    segment = body["segments"][0]
    assert segment["assigned_by"] == "automatic"
    business_day = datetime.fromisoformat(now).astimezone(ZoneInfo(stack.env.get("BUSINESS_TIMEZONE", DEFAULT_TZ)))
    assert segment["date_assigned"] == business_day.date().isoformat()
    assert unauthenticated.status_code == 401
