"""What redemption_ledger counts, beyond the metrics every service has (shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

REDEMPTIONS = Counter(
    "marketing_coupon_redemptions_total", "coupon.redeemed events by what the ledger did with them",
    ["outcome"],  # recorded, duplicate
)
FLAGGED = Counter(
    "marketing_coupon_redemptions_flagged_total",
    "Redemptions recorded although they broke a catalog rule, by rule (one redemption can break several)",
    ["flag"],
)
REVERSALS = Counter(
    "marketing_coupon_reversals_total", "Reversal requests by source and what the ledger did with them",
    ["source", "outcome"],  # outcome: reversed, already_reversed, held, already_held, voided, already_voided
)
INSIGHTS_PUBLISHED = Counter(
    "marketing_coupon_insights_published_total", "CustomerCouponInsightsChanged events written to the outbox",
    ["cause"],  # sale, sweep
)
