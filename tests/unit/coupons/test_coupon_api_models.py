"""Request parsing and response shaping of the coupon API, and price sensitivity figures (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.redemption_ledger import schemas as s
from services.redemption_ledger.domain import CouponTerms, price_sensitivity
from shared.contracts.domain import DiscountType

TZ = ZoneInfo("America/New_York")


def fields_in_error(model: type, body: dict) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_dates_mean_whole_business_days_and_naive_times_are_refused() -> None:
    body = s.CreateCoupon.model_validate({"code": "X1", "name": "X", "discount_type": "percent",
                                          "discount_value": "10", "valid_from": "2026-12-01",
                                          "valid_until": "2026-12-31"})
    terms = body.terms(TZ)
    assert terms.valid_from is not None and terms.valid_from.isoformat() == "2026-12-01T00:00:00-05:00"
    assert terms.valid_until is not None and terms.valid_until.isoformat() == "2027-01-01T00:00:00-05:00"
    assert fields_in_error(s.CreateCoupon, {"code": "X1", "name": "X", "discount_type": "percent",
                                            "discount_value": "10", "valid_from": "2026-12-01T10:00:00"}) == {
        "valid_from"}


def test_unknown_and_missing_fields_are_named() -> None:
    assert fields_in_error(s.CreateCoupon, {"code": "X1", "name": "X", "discount_type": "percent",
                                            "discount_value": "10", "max_redemption": 5}) == {"max_redemption"}
    assert fields_in_error(s.CreateCoupon, {"code": "bad code", "name": "X", "discount_type": "bogus"}) == {
        "code", "discount_type", "discount_value"}


def test_patch_changes_only_what_is_given_and_null_clears() -> None:
    terms = CouponTerms(name="Five", discount_type=DiscountType.AMOUNT, discount_value=Decimal("5.00"),
                        currency="USD", campaign="fall", max_redemptions=10)
    patched = s.PatchCoupon.model_validate({"name": "Five!", "campaign": None}).apply(terms, TZ)
    assert (patched.name, patched.campaign, patched.max_redemptions, patched.currency) == ("Five!", None, 10, "USD")
    to_percent = s.PatchCoupon.model_validate({"discount_type": "percent", "discount_value": "15"}).apply(terms, TZ)
    assert (to_percent.discount_type, to_percent.currency) == (DiscountType.PERCENT, None)
    assert fields_in_error(s.PatchCoupon, {"name": None, "active": None}) == {"name", "active"}


def test_display_reads_like_the_grid() -> None:
    assert s.display(DiscountType.PERCENT, "10", Decimal("10.20"), "USD") == "10% ($10.20)"
    assert s.display(DiscountType.AMOUNT, "5.00", Decimal("5.00"), "USD") == "$5.00"
    assert s.display(DiscountType.AMOUNT, "5.00", Decimal("4.00"), "USD") == "$5.00 ($4.00)"
    assert s.display(DiscountType.UNKNOWN, None, Decimal("1240.50"), "USD") == "$1,240.50"
    assert s.display(DiscountType.PERCENT, "12.5", Decimal("3.00"), "SEK") == "12.5% (3.00 SEK)"


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    at = datetime(2026, 11, 28, 19, 3, 12, 123456, tzinfo=UTC)
    assert s.time_cursor(s.encode_cursor(at, "rdm_1")) == (at, "rdm_1")
    for garbage in ("", "not-base64!", s.encode_cursor("x"), s.encode_cursor("2026-11-28T19:03:12", "rdm_1")):
        with pytest.raises(ValueError):
            s.time_cursor(garbage)


@pytest.mark.parametrize(("purchases", "with_coupon", "share", "only"), [
    (0, 0, "0.0000", False),
    (1, 1, "1.0000", False),   # one purchase is no habit (min_purchases 3)
    (3, 3, "1.0000", True),
    (5, 4, "0.8000", True),    # exactly at the threshold
    (10, 7, "0.7000", False),
    (3, 2, "0.6667", False),
    (100000, 79999, "0.8000", False),  # rounds to 0.8000 for display, but is below the threshold
])
def test_price_sensitivity(purchases: int, with_coupon: int, share: str, only: bool) -> None:
    f = price_sensitivity(purchases=purchases, purchases_with_coupon=with_coupon, window_days=365,
                          threshold=Decimal("0.8"), min_purchases=3)
    assert (f"{f.coupon_share:.4f}", f.coupon_only_buyer) == (share, only)
