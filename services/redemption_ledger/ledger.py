"""The redemption ledger's rules: record, reverse, hold, void. Pure: the store loads a slice, verbs change it,
the store appends what the verbs added. Nothing recorded is ever edited or deleted.

- A redemption is identified by (invoice_number, coupon code normalised). A second ``coupon.redeemed`` for
  the same pair (the POS re-sent it under a new event id) changes nothing.
- ``coupon.redemption_reversed`` reverses the redemption of (invoice, code); ``sale.voided`` reverses every
  redemption of the invoice, including ones that arrive after the void. A redemption is reversed at most once.
- A reversal that arrives before its redemption is held and applied when the redemption arrives.
- Usage (per code, and per code and customer) is redemptions minus reversals; the flags of a redemption are
  judged by the usage recorded before it and the coupon's terms in force when it was used.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.redemption_ledger.domain import Coupon, Usage, nominal_value, normalise_code, redemption_flags
from services.redemption_ledger.domain import terms_in_force as _terms_in_force
from shared.contracts.domain import CouponRedemptionRecorded, DiscountType, RedemptionStatus
from shared.contracts.pos import CouponRedeemed, CouponRedemptionReversed, SaleVoided

_NAMESPACE = uuid.UUID("6f1d3c52-8a43-4c1e-9b7e-2f5d0a9c4e11")
ALL_CUSTOMERS = ""  # the customer_id of a code's total usage counter
REVERSED_BY_COUPON_EVENT = "coupon.redemption_reversed"
REVERSED_BY_VOID = "sale.voided"

RedemptionKey = tuple[str, str]
"""(invoice_number, normalised coupon code): what identifies one redemption."""
UsageKey = tuple[str, str]
"""(normalised coupon code, customer_id or ALL_CUSTOMERS)."""


def redemption_id_for(invoice_number: str, coupon_code: str) -> str:
    """Deterministic, so that a rebuild of the ledger names every redemption the same."""
    return "rdm_" + uuid.uuid5(_NAMESPACE, f"{invoice_number}\n{coupon_code}").hex


@dataclass(frozen=True, slots=True)
class Redemption:
    redemption_id: str
    invoice_number: str
    coupon_code: str
    pos_coupon_code: str
    customer_id: str | None
    store_id: str
    register_id: str
    used_at: datetime
    discount_amount: Decimal
    currency: str
    # The coupon as it stood when it was used (a snapshot: later catalog edits never rewrite it).
    coupon_name: str
    discount_type: DiscountType
    discount_value: Decimal | None
    coupon_currency: str | None
    campaign: str | None
    coupon_revision: int | None
    flags: tuple[str, ...]
    source_event_id: uuid.UUID

    @property
    def key(self) -> RedemptionKey:
        return self.invoice_number, self.coupon_code


@dataclass(frozen=True, slots=True)
class Reversal:
    redemption_id: str
    reason: str
    source: str
    source_event_id: uuid.UUID
    reversed_at: datetime
    store_id: str | None
    held_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class HeldReversal:
    """A ``coupon.redemption_reversed`` whose redemption has not arrived yet."""

    invoice_number: str
    coupon_code: str
    reason: str
    source_event_id: uuid.UUID
    occurred_at: datetime
    store_id: str | None
    customer_id: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class InvoiceVoid:
    invoice_number: str
    reason: str
    source_event_id: uuid.UUID
    occurred_at: datetime
    store_id: str | None
    customer_id: str | None
    received_at: datetime


class Outcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # the same (invoice, code) under another event id
    REVERSED = "reversed"
    ALREADY_REVERSED = "already_reversed"
    HELD = "held"  # the reversal arrived before its redemption
    ALREADY_HELD = "already_held"
    VOIDED = "voided"
    ALREADY_VOIDED = "already_voided"


class LedgerSlice:
    """The part of the ledger one batch touches, and what the batch adds to it.

    ``usage`` must hold the counters (locked by the caller) of every code and customer the batch can touch:
    the codes of its redemptions and of the redemptions already recorded on its invoices.
    """

    def __init__(self, *, now: datetime, catalog: Mapping[str, Sequence[Coupon]] | None = None,
                 redemptions: Iterable[Redemption] = (), reversals: Iterable[Reversal] = (),
                 held: Iterable[HeldReversal] = (), voids: Iterable[InvoiceVoid] = (),
                 usage: Mapping[UsageKey, int] | None = None) -> None:
        self._now = now
        self._catalog = dict(catalog or {})
        self._by_key: dict[RedemptionKey, Redemption] = {}
        self._by_invoice: dict[str, list[Redemption]] = {}
        for r in redemptions:
            self._index(r)
        self._reversals = {r.redemption_id: r for r in reversals}
        self._held = {(h.invoice_number, h.coupon_code): h for h in held}
        self._voids = {v.invoice_number: v for v in voids}
        self._usage: dict[UsageKey, int] = dict(usage or {})
        self.new_redemptions: list[Redemption] = []
        self.new_reversals: list[Reversal] = []
        self.new_held: list[HeldReversal] = []
        self.new_voids: list[InvoiceVoid] = []
        self.usage_changed: dict[UsageKey, None] = {}
        self.changed: dict[str, Redemption] = {}  # redemptions whose row in the usage history changed

    # --- verbs ---------------------------------------------------------------------------------------------

    def redeem(self, event: CouponRedeemed) -> tuple[Outcome, Redemption]:
        code = normalise_code(event.coupon_code)
        key = (event.invoice_number, code)
        existing = self._by_key.get(key)
        if existing is not None:
            return Outcome.DUPLICATE, existing
        coupon = _terms_in_force(self._catalog.get(code, ()), event.occurred_at)
        usage = Usage(self.used(code), self.used(code, event.customer_id) if event.customer_id else 0)
        flags = redemption_flags(coupon, used_at=event.occurred_at, currency=event.currency,
                                 customer_id=event.customer_id, usage_before=usage)
        redemption = Redemption(
            redemption_id=redemption_id_for(event.invoice_number, code), invoice_number=event.invoice_number,
            coupon_code=code, pos_coupon_code=event.coupon_code, customer_id=event.customer_id,
            store_id=event.store_id, register_id=event.register_id, used_at=event.occurred_at,
            discount_amount=event.discount_amount, currency=event.currency, **_snapshot(coupon),
            flags=tuple(flags), source_event_id=event.event_id,
        )
        self._index(redemption)
        self.new_redemptions.append(redemption)
        self._count(redemption, +1)
        self.changed[redemption.redemption_id] = redemption
        self._apply_waiting_reversal(redemption)
        return Outcome.RECORDED, redemption

    def reverse(self, event: CouponRedemptionReversed) -> Outcome:
        code = normalise_code(event.coupon_code)
        key = (event.invoice_number, code)
        redemption = self._by_key.get(key)
        if redemption is None:
            if key in self._held:
                return Outcome.ALREADY_HELD
            held = HeldReversal(event.invoice_number, code, event.reason.value, event.event_id, event.occurred_at,
                                event.store_id, event.customer_id, self._now)
            self._held[key] = held
            self.new_held.append(held)
            return Outcome.HELD
        if redemption.redemption_id in self._reversals:
            return Outcome.ALREADY_REVERSED
        self._reverse(redemption, Reversal(redemption.redemption_id, event.reason.value, REVERSED_BY_COUPON_EVENT,
                                           event.event_id, event.occurred_at, event.store_id))
        return Outcome.REVERSED

    def void(self, event: SaleVoided) -> tuple[Outcome, list[Redemption]]:
        """Reverse every redemption of the voided invoice; later ones are reversed when they arrive."""
        outcome = Outcome.ALREADY_VOIDED
        void = self._voids.get(event.invoice_number)
        if void is None:
            void = InvoiceVoid(event.invoice_number, event.reason, event.event_id, event.occurred_at,
                               event.store_id, event.customer_id, self._now)
            self._voids[event.invoice_number] = void
            self.new_voids.append(void)
            outcome = Outcome.VOIDED
        reversed_now = []
        for redemption in self._by_invoice.get(event.invoice_number, ()):
            if redemption.redemption_id not in self._reversals:
                self._reverse(redemption, _void_reversal(redemption, void, held_since=None))
                reversed_now.append(redemption)
        return outcome, reversed_now

    # --- reads ---------------------------------------------------------------------------------------------

    def used(self, code: str, customer_id: str = ALL_CUSTOMERS) -> int:
        return self._usage.get((code, customer_id), 0)

    def reversal_of(self, redemption_id: str) -> Reversal | None:
        return self._reversals.get(redemption_id)

    def usage_updates(self) -> list[tuple[str, str, int]]:
        return [(code, customer, self._usage[(code, customer)]) for code, customer in self.usage_changed]

    # --- internals -----------------------------------------------------------------------------------------

    def _index(self, redemption: Redemption) -> None:
        self._by_key[redemption.key] = redemption
        self._by_invoice.setdefault(redemption.invoice_number, []).append(redemption)

    def _count(self, redemption: Redemption, delta: int) -> None:
        keys = [(redemption.coupon_code, ALL_CUSTOMERS)]
        if redemption.customer_id:
            keys.append((redemption.coupon_code, redemption.customer_id))
        for key in keys:
            self._usage[key] = max(0, self._usage.get(key, 0) + delta)
            self.usage_changed[key] = None

    def _reverse(self, redemption: Redemption, reversal: Reversal) -> None:
        self._reversals[redemption.redemption_id] = reversal
        self.new_reversals.append(reversal)
        self._count(redemption, -1)
        self.changed[redemption.redemption_id] = redemption

    def _apply_waiting_reversal(self, redemption: Redemption) -> None:
        """A void of the invoice or a held reversal that came first: the earlier of the two applies."""
        candidates: list[Reversal] = []
        void = self._voids.get(redemption.invoice_number)
        if void is not None:
            candidates.append(_void_reversal(redemption, void, held_since=void.received_at))
        held = self._held.get(redemption.key)
        if held is not None:
            candidates.append(Reversal(redemption.redemption_id, held.reason, REVERSED_BY_COUPON_EVENT,
                                       held.source_event_id, held.occurred_at, held.store_id, held.received_at))
        if candidates:
            self._reverse(redemption, min(candidates, key=lambda r: (r.reversed_at, r.source)))


def _void_reversal(redemption: Redemption, void: InvoiceVoid, *, held_since: datetime | None) -> Reversal:
    return Reversal(redemption.redemption_id, "void", REVERSED_BY_VOID, void.source_event_id, void.occurred_at,
                    void.store_id, held_since)


def _snapshot(coupon: Coupon | None) -> dict[str, object]:
    if coupon is None:
        return {"coupon_name": "", "discount_type": DiscountType.UNKNOWN, "discount_value": None,
                "coupon_currency": None, "campaign": None, "coupon_revision": None}
    t = coupon.terms
    return {"coupon_name": t.name, "discount_type": t.discount_type, "discount_value": t.discount_value,
            "coupon_currency": t.currency, "campaign": t.campaign, "coupon_revision": coupon.revision}


def redemption_version(reversal: Reversal | None) -> int:
    """1 when recorded, 2 once reversed: the version of the redemption's domain event."""
    return 1 if reversal is None else 2


def redemption_event(redemption: Redemption, reversal: Reversal | None, *, tz: ZoneInfo,
                     now: datetime) -> CouponRedemptionRecorded:
    """The Coupon Usage History row of one redemption, as it stands now (for an identified customer)."""
    assert redemption.customer_id is not None, "anonymous redemptions have no usage history row"
    return CouponRedemptionRecorded(
        event_id=uuid.uuid4(), occurred_at=now, version=redemption_version(reversal),
        redemption_id=redemption.redemption_id, customer_id=redemption.customer_id,
        coupon_code=redemption.coupon_code, coupon_name=redemption.coupon_name,
        discount_type=redemption.discount_type,
        discount_value=nominal_value(redemption.discount_type, redemption.discount_value),
        discount_amount=redemption.discount_amount, currency=redemption.currency,
        used_at=redemption.used_at.astimezone(tz), invoice_number=redemption.invoice_number,
        store_id=redemption.store_id,
        status=RedemptionStatus.REVERSED if reversal else RedemptionStatus.REDEEMED,
        reversed_at=reversal.reversed_at.astimezone(tz) if reversal else None,
        flags=list(redemption.flags),
        campaign=redemption.campaign, register_id=redemption.register_id,
        reversal_reason=reversal.reason if reversal else None,
    )
