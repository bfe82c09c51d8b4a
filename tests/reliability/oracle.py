"""Expected final state computed from the event log alone.

Bookkeeping here is the oracle's own: dedup by event id (first publication wins), events applied per message
key in publication order (Kafka keeps that order within a key), malformed messages ignored. The gift card
rules themselves come from the ledger's PURE domain module (services.giftcard_ledger.domain), because
re-deriving them would only duplicate it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from services.giftcard_ledger.domain import Context, GiftCard, InvoiceTotals, Policy, Rejected
from shared.contracts import topics

TZ = ZoneInfo("America/New_York")


def card_hmac(key: str, number: str) -> bytes:
    normalized = "".join(number.split()).upper()
    return hmac.new(key.encode(), b"card-number:" + normalized.encode(), hashlib.sha256).digest()


@dataclass
class OracleCard:
    card: GiftCard
    number: str
    entries: list[Any] = field(default_factory=list)


@dataclass
class Expected:
    cards: dict[str, OracleCard] = field(default_factory=dict)  # card number -> card
    rejections: int = 0
    redemptions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (invoice, CODE) -> row
    customers: set[str] = field(default_factory=set)
    invoices: dict[str, str | None] = field(default_factory=dict)  # sale invoice -> customer
    returns: set[str] = field(default_factory=set)
    voided: set[str] = field(default_factory=set)
    returned_total: dict[str, Decimal] = field(default_factory=dict)  # original invoice -> refunds
    applied: int = 0  # distinct valid events
    mentioned: set[str] = field(default_factory=set)  # customers named by any sales or CRM event

    # --- what the services must hold -------------------------------------------------------------------------

    def giftcard_state(self, key: str) -> dict[bytes, tuple[Decimal, int]]:
        """Balance and entry count per card, once the expiry sweep has run (the test asks for one before it
        compares): a card whose expiration date has passed has one more entry, its `expire`."""
        today = datetime.now(TZ).date()
        return {card_hmac(key, c.number): (c.card.current_balance, len(c.entries) + (
            1 if c.card.expires_on is not None and c.card.expires_on < today else 0)) for c in self.cards.values()}

    def coupon_state(self) -> dict[tuple[str, str], bool]:
        return {pair: row["reversed"] for pair, row in self.redemptions.items()}

    def usage_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (_, code), row in self.redemptions.items():
            counts[code] = counts.get(code, 0) + (0 if row["reversed"] else 1)
        return counts

    def invoice_state(self) -> dict[str, tuple[bool, Decimal]]:
        return {inv: (inv in self.voided, self.returned_total.get(inv, Decimal(0))) for inv in self.invoices}

    def tab(self, customer: str) -> dict[str, Any]:
        cards = sorted((c.card.last4, f"{c.card.original_balance:.2f}", f"{c.card.current_balance:.2f}")
                       for c in self.cards.values() if c.card.customer_id == customer)
        usage = sorted((inv, code, "reversed" if row["reversed"] else "redeemed")
                       for (inv, code), row in self.redemptions.items() if row["customer_id"] == customer)
        return {"gift_cards": cards, "coupon_usage": usage}


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def compute(log: list[tuple[str, bytes | None, bytes]], prefix: str) -> Expected:
    """``log``: (physical topic, key, value) in publication order."""
    import orjson

    from shared.contracts.codec import ContractViolation, decode

    policy = Policy(business_tz=TZ)
    exp = Expected()
    seen: set[str] = set()
    voided: set[str] = set()
    reversals: set[tuple[str, str]] = set()
    for topic, _key, value in log:
        logical = topic.removeprefix(prefix)
        if logical not in topics.INBOUND_TOPICS:
            continue
        try:
            decode(logical, value)  # the contract decides what is valid; the oracle keeps the raw fields
            event = orjson.loads(value)
        except (ContractViolation, ValueError):
            continue
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        exp.applied += 1
        kind = event["event_type"]
        if logical in (topics.POS_SALES, topics.CRM_CUSTOMERS) and event.get("customer_id"):
            exp.mentioned.add(event["customer_id"])
        if logical == topics.POS_GIFTCARD_ACTIVITY:
            exp.rejections += _giftcard(exp, event, policy)
        elif kind == "coupon.redeemed":
            pair = (event["invoice_number"], event["coupon_code"].strip().upper())
            exp.redemptions.setdefault(pair, {"customer_id": event["customer_id"], "reversed": False})
        elif kind == "coupon.redemption_reversed":
            reversals.add((event["invoice_number"], event["coupon_code"].strip().upper()))
        elif kind == "sale.voided":
            voided.add(event["invoice_number"])
            exp.voided.add(event["invoice_number"])
        elif kind == "sale.completed":
            exp.invoices.setdefault(event["invoice_number"], event["customer_id"])
        elif kind == "sale.returned":
            if event["invoice_number"] not in exp.returns:  # a return counts once by its own invoice
                exp.returns.add(event["invoice_number"])
                original = event["original_invoice_number"]
                exp.returned_total[original] = exp.returned_total.get(original, Decimal(0)) + Decimal(
                    event["refund_total"])
        elif kind.startswith("customer."):  # the engine knows a customer from any CRM event
            exp.customers.add(event["customer_id"])
    for pair, row in exp.redemptions.items():
        row["reversed"] = pair in reversals or pair[0] in voided
    return exp


def _giftcard(exp: Expected, event: dict[str, Any], policy: Policy) -> int:
    """Apply one gift card event; 1 if the ledger must refuse it."""
    number = "".join(event["card_number"].split()).upper()
    amount = Decimal(event["amount"])
    ctx = Context(at=_dt(event["occurred_at"]), actor="oracle", source=f"event:{event['event_id']}",
                  store_id=event["store_id"], invoice_number=event["invoice_number"])
    held = exp.cards.get(number)
    try:
        if event["event_type"] == "giftcard.activated":
            if held is not None:
                return 1
            expires = date.fromisoformat(event["expires_on"]) if event.get("expires_on") else None
            card, entry = GiftCard.issue(card_id="gc_" + "x" * 22, last4=number[-4:], customer_id=event["customer_id"],
                                         amount=amount, currency=event["currency"], expires_on=expires, ctx=ctx,
                                         policy=policy, at_pos=True)
            exp.cards[number] = OracleCard(card, number, [entry])
            return 0
        if held is None:
            return 1
        if event["event_type"] == "giftcard.reloaded":
            entry = held.card.reload(amount, event["currency"], ctx, policy)
        elif event["event_type"] == "giftcard.redeemed":
            entry = held.card.redeem(amount, event["currency"], ctx, policy)
        else:
            original = event["original_invoice_number"]
            totals = InvoiceTotals.of(held.entries, original)
            entry = held.card.refund(amount, event["currency"], original, totals, ctx, policy)
        held.entries.append(entry)
        return 0
    except Rejected:
        return 1
