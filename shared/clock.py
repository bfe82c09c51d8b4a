"""Time as a port: services ask a ``Clock``; tests pass a ``FixedClock`` they move by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move."""

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware moment")
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware moment")
        self.moment = moment


def business_day(moment: datetime, tz: ZoneInfo) -> date:
    """The retailer's calendar day of an instant: ``occurred_at`` converted to the business time zone."""
    if moment.tzinfo is None:
        raise ValueError("business_day needs a timezone-aware moment")
    return moment.astimezone(tz).date()
