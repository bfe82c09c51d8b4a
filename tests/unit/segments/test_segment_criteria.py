"""Each criterion at its boundaries, on the per-customer path (pure Python over one customer's facts).

The set-based path is held to the same answers by the property test in tests/integration/segments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from services.segment_engine.compiler import compile_rule
from services.segment_engine.facts import CustomerFacts, InvoiceFact
from shared.clock import business_day

NY = ZoneInfo("America/New_York")
TODAY = date(2026, 6, 15)
_n = 0


def inv(day: date | int, total: str = "10.00", *, store: str = "S-1", categories: tuple[str, ...] = ("Footwear",),
        units: int = 1, voided: bool = False, returned: str = "0.00", returned_units: int = 0) -> InvoiceFact:
    global _n
    _n += 1
    when = TODAY - timedelta(days=day) if isinstance(day, int) else day
    return InvoiceFact(f"INV-{_n}", when, store, Decimal(total), units, categories, True, voided, Decimal(returned),
                       returned_units)


def customer(*invoices: InvoiceFact, signup: date | None = None, tier: str | None = None) -> CustomerFacts:
    return CustomerFacts("C-1", signup, tier, tuple(invoices))


def matches(rule: dict, facts: CustomerFacts, today: date = TODAY) -> bool:
    return compile_rule(rule).evaluate(facts, today) is not None


def notes(rule: dict, facts: CustomerFacts, today: date = TODAY) -> str | None:
    return compile_rule(rule).evaluate(facts, today)


# --- windows and the business time zone --------------------------------------------------------------------


def test_a_window_of_n_days_is_today_and_the_n_minus_1_days_before() -> None:
    rule = {"purchase_frequency": {"min_purchases": 1, "window_days": 30}}
    assert matches(rule, customer(inv(0)))
    assert matches(rule, customer(inv(29)))
    assert not matches(rule, customer(inv(30)))
    assert not matches(rule, customer(inv(-1))), "a purchase dated after today does not count yet"


def test_one_day_window_is_today_only() -> None:
    rule = {"purchase_frequency": {"min_purchases": 1, "window_days": 1}}
    assert matches(rule, customer(inv(0)))
    assert not matches(rule, customer(inv(1)))
    assert notes(rule, customer(inv(0))) == "1 purchase today (rule: at least 1)"


@pytest.mark.parametrize(("instant", "expected"), [
    ("2026-11-29T04:59:59+00:00", date(2026, 11, 28)),  # 23:59:59 in New York
    ("2026-11-29T05:00:00+00:00", date(2026, 11, 29)),  # midnight in New York
    ("2026-03-08T06:59:00+00:00", date(2026, 3, 8)),  # 01:59 EST, just before the clocks go forward
    ("2026-03-08T07:30:00+00:00", date(2026, 3, 8)),  # 03:30 EDT
    ("2026-06-15T03:59:00+00:00", date(2026, 6, 14)),  # 23:59 EDT
    ("2026-06-14T23:30:00-04:00", date(2026, 6, 14)),  # the offset the till sent does not matter
    ("2026-06-15T05:30:00+02:00", date(2026, 6, 14)),
])
def test_business_day_is_the_instant_in_the_business_time_zone(instant: str, expected: date) -> None:
    assert business_day(datetime.fromisoformat(instant), NY) == expected


def test_a_late_evening_sale_counts_on_its_own_business_day_at_the_window_edge() -> None:
    # 23:30 in New York on 2026-05-17 is already 2026-05-18 in UTC.
    late_evening = business_day(datetime(2026, 5, 18, 3, 30, tzinfo=UTC), NY)
    assert late_evening == date(2026, 5, 17)
    rule = {"purchase_frequency": {"min_purchases": 1, "window_days": 30}}
    facts = customer(inv(late_evening))
    assert matches(rule, facts, today=date(2026, 6, 15))  # 2026-05-17 is the 30th day counting back from 06-15
    # One second before midnight in New York it is still 06-15; one second later the sale has left the window.
    before_midnight = business_day(datetime(2026, 6, 16, 3, 59, 59, tzinfo=UTC), NY)
    after_midnight = business_day(datetime(2026, 6, 16, 4, 0, 0, tzinfo=UTC), NY)
    assert matches(rule, facts, today=before_midnight)
    assert not matches(rule, facts, today=after_midnight)


# --- purchase frequency --------------------------------------------------------------------------------------


def test_purchase_count_at_its_threshold() -> None:
    rule = {"purchase_frequency": {"min_purchases": 4, "window_days": 30}}
    four = customer(*(inv(d) for d in (0, 5, 10, 29)))
    assert notes(rule, four) == "4 purchases in the last 30 days (rule: at least 4)"
    assert not matches(rule, customer(*(inv(d) for d in (0, 5, 10, 30))))


def test_a_purchase_is_a_sale_not_voided_and_not_returned_in_full() -> None:
    rule = {"purchase_frequency": {"min_purchases": 2, "window_days": 30}}
    assert matches(rule, customer(inv(1), inv(2, units=2, returned="5.00", returned_units=1)))  # partial return
    assert not matches(rule, customer(inv(1), inv(2, units=2, returned="10.00", returned_units=2)))  # full return
    assert not matches(rule, customer(inv(1), inv(2, voided=True)))
    pending = InvoiceFact("INV-X", None, None, Decimal(0), 0, (), has_sale=False, voided=True)
    assert not matches(rule, customer(inv(1), pending)), "a void waiting for its sale is no purchase"


def test_max_purchases_and_lifetime() -> None:
    assert matches({"purchase_frequency": {"max_purchases": 0}}, customer())
    assert not matches({"purchase_frequency": {"max_purchases": 1}}, customer(inv(400), inv(800)))
    assert notes({"purchase_frequency": {"min_purchases": 2}}, customer(inv(400), inv(800))) == (
        "2 purchases in total (rule: at least 2)")
    assert notes({"purchase_frequency": {"min_purchases": 1, "max_purchases": 3, "window_days": 7}},
                 customer(inv(1))) == "1 purchase in the last 7 days (rule: between 1 and 3)"


def test_cadence_is_one_purchase_per_period_on_average() -> None:
    rule = {"purchase_frequency": {"cadence": "weekly", "window_days": 90}}  # 90 / 7 -> at least 13
    thirteen = customer(*(inv(d) for d in range(0, 90, 7)))
    assert len(thirteen.invoices) == 13
    assert notes(rule, thirteen) == (
        "13 purchases in the last 90 days (rule: weekly on average, at least 13 purchases)")
    assert not matches(rule, customer(*(inv(d) for d in range(0, 84, 7))))
    assert matches({"purchase_frequency": {"cadence": "monthly", "window_days": 60}}, customer(inv(1), inv(50)))
    assert not matches({"purchase_frequency": {"cadence": "monthly", "window_days": 61}}, customer(inv(1), inv(50)))


# --- total spend ---------------------------------------------------------------------------------------------


def test_spend_at_its_threshold_and_the_return_that_drops_it_below() -> None:
    rule = {"total_spend": {"min": "1000.00", "window_days": 365}}
    assert notes(rule, customer(inv(3, "600.00"), inv(364, "400.00"))) == (
        "Spent $1,000.00 in the last 365 days (rule: at least $1,000.00)")
    assert not matches(rule, customer(inv(3, "600.00"), inv(365, "400.00")))
    returned = customer(inv(3, "600.00", units=2, returned="0.01", returned_units=1), inv(364, "400.00"))
    assert not matches(rule, returned), "a return of one cent is enough to fall below"
    assert not matches(rule, customer(inv(3, "600.00", voided=True), inv(10, "999.99")))


def test_spend_of_an_invoice_never_goes_below_zero() -> None:
    over_refunded = customer(inv(1, "50.00", units=2, returned="80.00", returned_units=1), inv(2, "30.00"))
    assert notes({"total_spend": {"max": "30.00"}}, over_refunded) == "Spent $30.00 in total (rule: at most $30.00)"


def test_spend_between_bounds() -> None:
    rule = {"total_spend": {"min": "10", "max": "20"}}
    assert matches(rule, customer(inv(1, "20.00")))
    assert not matches(rule, customer(inv(1, "20.01")))
    assert notes(rule, customer(inv(1, "10.00"))) == "Spent $10.00 in total (rule: between $10.00 and $20.00)"


# --- signup --------------------------------------------------------------------------------------------------


def test_signup_within_days_at_its_edges() -> None:
    rule = {"signup": {"within_days": 30}}
    assert notes(rule, customer(signup=TODAY)) == (
        "Signed up on 2026-06-15, today (rule: signed up within the last 30 days)")
    assert notes(rule, customer(signup=TODAY - timedelta(days=29))) == (
        "Signed up on 2026-05-17, 29 days ago (rule: signed up within the last 30 days)")
    assert not matches(rule, customer(signup=TODAY - timedelta(days=30)))
    assert not matches(rule, customer(signup=TODAY + timedelta(days=1)))
    assert not matches(rule, customer()), "a customer only seen in sales has no signup date"


def test_signup_before_and_since() -> None:
    assert matches({"signup": {"before": "2025-01-01"}}, customer(signup=date(2024, 12, 31)))
    assert not matches({"signup": {"before": "2025-01-01"}}, customer(signup=date(2025, 1, 1)))
    assert matches({"signup": {"since": "2025-01-01"}}, customer(signup=date(2025, 1, 1)))
    assert notes({"not": {"signup": {"since": "2025-01-01"}}}, customer()) == (
        "No signup date (rule: not signed up on or after 2025-01-01)")


# --- product categories --------------------------------------------------------------------------------------


def test_categories_any_of_and_all_of() -> None:
    facts = customer(inv(1, categories=("Footwear", "Socks")), inv(100, categories=("Denim",)))
    assert notes({"product_categories": {"any_of": ["Socks", "Denim"], "window_days": 90}}, facts) == (
        "1 purchase in Socks, Denim in the last 90 days (rule: at least 1 purchase in any of Socks, Denim)")
    assert not matches({"product_categories": {"any_of": ["Socks", "Denim"], "min_purchases": 2,
                                               "window_days": 90}}, facts)
    assert matches({"product_categories": {"any_of": ["Socks", "Denim"], "min_purchases": 2}}, facts)
    assert not matches({"product_categories": {"all_of": ["Footwear", "Denim"], "window_days": 90}}, facts)
    assert notes({"product_categories": {"all_of": ["Footwear", "Denim"], "window_days": 180}}, facts) == (
        "Bought Footwear 1 time, Denim 1 time in the last 180 days (rule: each of Footwear, Denim at least 1 time)")


def test_a_full_return_takes_the_category_purchase_back() -> None:
    facts = customer(inv(1, categories=("Socks",), units=1, returned="10.00", returned_units=1))
    assert not matches({"product_categories": {"any_of": ["Socks"]}}, facts)


# --- location ------------------------------------------------------------------------------------------------


def test_most_frequent_store_with_ties_counting_for_each_top_store() -> None:
    rule = {"location": {"most_frequent_store_in": ["S-2"], "window_days": 365}}
    assert not matches(rule, customer(inv(1, store="S-1"), inv(2, store="S-1"), inv(3, store="S-2")))
    tie = customer(inv(1, store="S-1"), inv(3, store="S-2"))
    assert notes(rule, tie) == (
        "Shops most often at S-2 (1 of 2 purchases in the last 365 days) (rule: most frequent store in S-2)")
    assert notes({"location": {"most_frequent_store_in": ["S-2", "S-1"]}}, tie) == (
        "Shops most often at S-1 (1 of 2 purchases in total) (rule: most frequent store in S-2, S-1)")
    assert not matches(rule, customer()), "no purchases: no most frequent store"
    old = customer(inv(1, store="S-1"), inv(400, store="S-2"), inv(401, store="S-2"))
    assert not matches(rule, old), "only the window counts"


# --- loyalty tier --------------------------------------------------------------------------------------------


def test_loyalty_tier_is_an_exact_match() -> None:
    rule = {"loyalty_tier": {"in": ["Gold", "Platinum"]}}
    assert notes(rule, customer(tier="Gold")) == "Loyalty tier Gold (rule: tier Gold or Platinum)"
    assert not matches(rule, customer(tier="gold"))
    assert not matches(rule, customer())
    assert notes({"not": rule}, customer()) == "No loyalty tier (rule: not tier Gold or Platinum)"


# --- frequency drop ------------------------------------------------------------------------------------------

AT_RISK = {"frequency_drop": {"recent_days": 60, "baseline_days": 180, "max_ratio": 0.5,
                              "min_baseline_purchases": 3}}


def test_frequency_drop_compares_the_recent_rate_with_the_baseline_before_it() -> None:
    # Baseline: the 180 days before the last 60 (days 60..239 ago).
    baseline = [inv(d) for d in (60, 100, 150, 200, 230, 239)]  # 6 in 180 days: 1 per 30 days
    assert matches(AT_RISK, customer(*baseline))
    assert matches(AT_RISK, customer(*baseline, inv(59)))  # 1 in 60 days: exactly half the usual rate
    assert not matches(AT_RISK, customer(*baseline, inv(59), inv(10)))  # 2 in 60 days: the usual rate
    assert notes(AT_RISK, customer(*baseline, inv(59))) == (
        "1 purchase in the last 60 days against 6 in the 180 days before (50% of the usual rate)"
        " (rule: purchase rate at most 50% of the 180 days before, with at least 3 purchases then)")


def test_frequency_drop_needs_enough_baseline_purchases() -> None:
    assert not matches(AT_RISK, customer(inv(100), inv(200)))  # 2 < 3 baseline purchases
    assert matches(AT_RISK, customer(inv(100), inv(200), inv(239)))
    assert not matches(AT_RISK, customer(inv(100), inv(200), inv(240))), "day 240 is outside the baseline"
    assert not matches(AT_RISK, customer())


def test_frequency_drop_arrives_with_time_alone() -> None:
    history = customer(*(inv(d) for d in (5, 15, 25, 35, 45)))
    assert not matches(AT_RISK, history)
    assert matches(AT_RISK, history, today=TODAY + timedelta(days=62))


# --- composition ---------------------------------------------------------------------------------------------


def test_all_any_not_and_their_explanations() -> None:
    facts = customer(inv(1, "1200.00"), tier="Silver")
    rule = {"all": [{"total_spend": {"min": "1000", "window_days": 365}},
                    {"any": [{"loyalty_tier": {"in": ["Gold"]}}, {"purchase_frequency": {"min_purchases": 1}}]},
                    {"not": {"loyalty_tier": {"in": ["Bronze"]}}}]}
    assert notes(rule, facts) == (
        "Spent $1,200.00 in the last 365 days (rule: at least $1,000.00); "
        "1 purchase in total (rule: at least 1); "
        "Loyalty tier Silver (rule: not tier Bronze)")
    assert not matches({"not": rule}, facts)
    assert compile_rule(rule).explain_failure(customer(tier="Bronze"), TODAY) == (
        "Spent $0.00 in the last 365 days (rule: at least $1,000.00); "
        "Loyalty tier Bronze (rule: tier Gold); 0 purchases in total (rule: at least 1); "
        "Loyalty tier Bronze (rule: not tier Bronze)")


def test_several_keys_in_one_mapping_must_all_hold() -> None:
    rule = {"loyalty_tier": {"in": ["Gold"]}, "purchase_frequency": {"min_purchases": 1}}
    assert not matches(rule, customer(tier="Gold"))
    assert matches(rule, customer(inv(1), tier="Gold"))
