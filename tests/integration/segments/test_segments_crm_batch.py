"""segment_engine applies a batch of CRM events set-based (one statement per kind for customers with one event in
the batch) with the same meaning as one by one: the latest registration and the latest tier by occurred_at win,
whatever the order of arrival."""

from __future__ import annotations

from tests.conftest import Stack
from tests.integration.segments.support import days_ago, engine, registered, tier_changed


async def test_crm_batch_latest_by_occurred_at_wins(stack: Stack, topics: str, isolation: str) -> None:
    async with engine(stack, topics, isolation) as e:
        # First batch: one event per customer (the set-based path).
        await e.crm(registered("C-crm-a", days_ago(10), tier="Silver"), tier_changed("C-crm-b", days_ago(1), "Gold"),
                    registered("C-crm-c", days_ago(5)))
        await e.wait_applied(3)
        # Second batch: older facts arrive late (must not undo the newer ones) next to newer ones (must apply),
        # again one event per customer.
        await e.crm(registered("C-crm-a", days_ago(20), tier="Bronze"), tier_changed("C-crm-b", days_ago(3), "Bronze"),
                    tier_changed("C-crm-c", days_ago(1), "Gold"), registered("C-crm-d", days_ago(2), tier="Silver"))
        await e.wait_applied(7)
        # Third batch: two events of one customer (one by one, in order) next to a single one.
        await e.crm(tier_changed("C-crm-d", days_ago(0.5), "Gold"), tier_changed("C-crm-d", days_ago(1), "Bronze"),
                    registered("C-crm-e", days_ago(4), tier="Gold"))
        await e.wait_applied(10)
        rows = {r["customer_id"]: (r["signup_day"], r["loyalty_tier"]) for r in await e.db(
            "SELECT customer_id, signup_day, loyalty_tier FROM customers WHERE customer_id LIKE 'C-crm-%'")}
        assert rows == {
            "C-crm-a": (days_ago(10).date(), "Silver"),  # the older registration (and its tier) came late
            "C-crm-b": (None, "Gold"),  # the older tier came late
            "C-crm-c": (days_ago(5).date(), "Gold"),
            "C-crm-d": (days_ago(2).date(), "Gold"),
            "C-crm-e": (days_ago(4).date(), "Gold"),
        }
