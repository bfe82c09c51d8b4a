"""Request and response models of the management API (strict: unknown fields are refused)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.giftcard_ledger.cardnumbers import mask
from services.giftcard_ledger.domain import AdjustReason, CardState, CardStatus, EntryType, GiftCard
from services.giftcard_ledger.store import EntryRow
from shared.contracts.common import CardNumber, Currency, Identifier, Money, PositiveMoney

Note = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$",
                            description="Free text for the ledger (no control characters)")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssueRequest(Request):
    customer_id: Identifier = Field(description="Customer the card belongs to")
    amount: PositiveMoney = Field(description='Initial balance, e.g. "50.00"')
    currency: Currency
    expires_on: date | None = Field(None, description="Last day the card is valid (business time zone); none: never")
    card_number: CardNumber | None = Field(
        None, description="8 to 20 letters or digits, when the card was printed elsewhere; else 16 digits are generated"
    )


class ReloadRequest(Request):
    amount: PositiveMoney
    currency: Currency | None = Field(None, description="Must be the card's currency when given")
    reason: Note | None = None


class RedeemRequest(Request):
    amount: PositiveMoney
    currency: Currency | None = Field(None, description="Must be the card's currency when given")
    invoice_number: Identifier | None = None
    store_id: Identifier | None = None
    reason: Note | None = None


class AdjustRequest(Request):
    amount: Money = Field(description='Signed, non-zero: "5.00" adds, "-5.00" takes away')
    reason: AdjustReason = Field(description="Reason code")
    note: Note | None = None


class LifecycleRequest(Request):
    reason: Note | None = None


class AssignRequest(Request):
    customer_id: Identifier
    reason: Note | None = None


class LookupRequest(Request):
    card_number: CardNumber


class SweepRequest(Request):
    as_of: AwareDatetime | None = Field(None, description="Expire what has expired as of this moment (default: now)")


class CardOut(BaseModel):
    """One card, as staff and the Gift Cards grid see it. Never the full number."""

    card_id: str
    card_number_masked: str
    last4: str
    customer_id: str | None
    original_balance: Money
    current_balance: Money
    currency: str
    status: CardStatus = Field(description="As of the moment of the answer")
    state: CardState
    issue_date: date
    issued_at: datetime
    expiration_date: date | None
    expired_at: datetime | None
    deactivated_at: datetime | None
    version: int

    @classmethod
    def of(cls, card: GiftCard, as_of: datetime, tz: ZoneInfo) -> CardOut:
        return cls(
            card_id=card.card_id, card_number_masked=mask(card.last4), last4=card.last4,
            customer_id=card.customer_id, original_balance=card.original_balance,
            current_balance=card.current_balance, currency=card.currency, status=card.status_at(as_of, tz),
            state=card.state, issue_date=card.issue_date(tz), issued_at=card.issued_at,
            expiration_date=card.expires_on, expired_at=card.expired_at, deactivated_at=card.deactivated_at,
            version=card.version,
        )


class IssuedCardOut(CardOut):
    card_number: str | None = Field(
        description="The full number: in this response only. A replay of the request (same Idempotency-Key) "
        "repeats it only if the request supplied it; a generated number is never shown again."
    )


class EntryOut(BaseModel):
    seq: int
    type: EntryType
    amount: Money
    balance_after: Money
    occurred_at: datetime
    recorded_at: datetime
    store_id: str | None
    invoice_number: str | None
    original_invoice_number: str | None
    customer_id: str | None
    actor: str
    reason: str | None
    source: str

    @classmethod
    def of(cls, row: EntryRow) -> EntryOut:
        return cls(seq=row.seq, type=row.type, amount=row.amount, balance_after=row.balance_after,
                   occurred_at=row.occurred_at, recorded_at=row.recorded_at, store_id=row.store_id,
                   invoice_number=row.invoice_number, original_invoice_number=row.original_invoice_number,
                   customer_id=row.customer_id, actor=row.actor, reason=row.reason, source=row.source)


class TransactionsOut(BaseModel):
    card_id: str
    items: list[EntryOut]
    next_cursor: str | None


class CardListOut(BaseModel):
    items: list[CardOut]
    next_cursor: str | None


class CustomerCardsOut(CardListOut):
    customer_id: str


class ExpiringOut(CardListOut):
    within_days: int
    from_date: date
    to_date: date


class SweepOut(BaseModel):
    as_of: datetime
    expired: int


class ErrorOut(BaseModel):
    detail: str
    reason: str | None = None
