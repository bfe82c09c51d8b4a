"""Customer facts: what the engine keeps of sales and the CRM, and what a purchase is. Pure: no I/O.

- An **invoice** is one ``sale.completed`` (its business day is ``occurred_at`` in the business time zone).
  Voids and returns are stored against the invoice they refer to, even when they arrive before it.
- A **purchase** is an invoice that completed, was not voided, and was not returned in full (the units
  returned, over all its returns, are fewer than the units sold). A partial return leaves the purchase.
- **Net spend** of an invoice is its ``total`` minus the ``refund_total`` of its returns, never below zero,
  for a completed, not voided invoice; a voided invoice spends nothing. Spend and purchases count on the
  invoice's own business day, so a return takes back spend from the window its sale fell in.

The SQL side (generated columns ``counted``, ``is_purchase``, ``net_spend`` of the ``invoices`` table,
migration 002) states the same definitions; a property test checks that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class InvoiceFact:
    invoice_number: str
    business_day: date | None
    store_id: str | None
    total: Decimal
    units: int
    categories: tuple[str, ...]
    has_sale: bool
    voided: bool = False
    returned_total: Decimal = ZERO
    returned_units: int = 0

    @property
    def counted(self) -> bool:
        """The sale is known and stands (not voided)."""
        return self.has_sale and not self.voided

    @property
    def is_purchase(self) -> bool:
        return self.counted and self.returned_units < self.units

    @property
    def net_spend(self) -> Decimal:
        if not self.counted:
            return ZERO
        return max(self.total - self.returned_total, ZERO)


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    customer_id: str
    signup_day: date | None = None
    loyalty_tier: str | None = None
    invoices: tuple[InvoiceFact, ...] = field(default_factory=tuple)
    facts_version: int = 0
