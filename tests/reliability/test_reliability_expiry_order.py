"""Regression of the defect scenario 1 found at full size: the gift card ledger's verdict on a POS event must not
depend on whether the expiry sweep ran before the event arrived (pure domain, no I/O)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from services.giftcard_ledger.domain import Context, GiftCard, Policy, Rejected

TZ = ZoneInfo("America/New_York")
POLICY = Policy(business_tz=TZ)


def _card(expires_on: date) -> GiftCard:
    ctx = Context(at=datetime(2026, 1, 2, 10, tzinfo=TZ), actor="pos", source="event:a")
    card, _ = GiftCard.issue(card_id="gc_" + "a" * 22, last4="1234", customer_id="C-1", amount=Decimal("50.00"),
                             currency="USD", expires_on=expires_on, ctx=ctx, policy=POLICY, at_pos=True)
    return card


def test_redemption_before_expiry_arriving_after_the_sweep_is_accepted() -> None:
    card = _card(date(2026, 6, 30))
    sweep = Context(at=POLICY.end_of(date(2026, 6, 30)), actor="system:sweep", source="sweep:2026-06-30")
    card.expire(sweep)  # the sweep ran first
    before = Context(at=datetime(2026, 6, 30, 20, tzinfo=TZ), actor="pos", source="event:b")
    entry = card.redeem(Decimal("20.00"), "USD", before, POLICY)  # happened on the last valid day
    assert card.current_balance == Decimal("30.00") and entry.amount == Decimal("-20.00")
    after = Context(at=POLICY.end_of(date(2026, 6, 30)) + timedelta(seconds=1), actor="pos", source="event:c")
    with pytest.raises(Rejected):
        card.redeem(Decimal("1.00"), "USD", after, POLICY)


def test_staff_expiry_applies_from_its_own_moment() -> None:
    card = _card(date(2027, 6, 30))
    card.expire(Context(at=datetime(2026, 3, 1, 12, tzinfo=TZ), actor="staff", source="idem:x"))
    with pytest.raises(Rejected):
        card.redeem(Decimal("1.00"), "USD", Context(at=datetime(2026, 3, 1, 13, tzinfo=TZ), actor="pos",
                                                    source="event:d"), POLICY)
    card.redeem(Decimal("1.00"), "USD", Context(at=datetime(2026, 2, 28, 13, tzinfo=TZ), actor="pos",
                                                source="event:e"), POLICY)
    assert card.current_balance == Decimal("49.00")
