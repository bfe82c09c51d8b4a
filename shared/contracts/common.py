"""Field types every contract uses: money, currency, identifiers, the common event envelope."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

_MONEY = re.compile(r"^-?\d{1,12}\.\d{2}$")
CENT = Decimal("0.01")


def parse_money(value: Any) -> Decimal:
    """Money travels as a decimal string with exactly two places ("12.34"); never a float."""
    if isinstance(value, Decimal):
        if value != value.quantize(CENT) or not value.is_finite():
            raise ValueError("money must have at most two decimal places")
        return value.quantize(CENT)
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string with two places, e.g. "12.34"')
    if not _MONEY.match(value):
        raise ValueError(f'money must be a decimal string with two places, e.g. "12.34", got {value!r}')
    return Decimal(value)


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("amount must be greater than zero")
    return value


_money_out = PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="always")

Money = Annotated[Decimal, BeforeValidator(parse_money), _money_out]
"""Any amount, signed, two places."""

PositiveMoney = Annotated[Decimal, BeforeValidator(lambda v: _positive(parse_money(v))), _money_out]
"""An amount strictly above zero, two places."""

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
CardNumber = Annotated[
    str,
    Field(
        min_length=8,
        max_length=20,
        pattern=r"^[A-Za-z0-9]+$",
        description="Full gift card number: only ever on pos.giftcard-activity.v1",
    ),
]


class Contract(BaseModel):
    """Frozen, strict about what it declares, tolerant of extra fields (forward compatibility)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)


class EventEnvelope(Contract):
    event_id: UUID = Field(description="Unique per event; the same id twice changes nothing the second time")
    schema_version: Literal[1] = Field(1, description="Contract version; only 1 exists")
    occurred_at: AwareDatetime = Field(description="When it happened, RFC 3339 with offset")
