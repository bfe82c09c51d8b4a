"""Use cases of redemption_ledger: each opens one transaction, applies domain verbs, writes the outbox."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel

from services.redemption_ledger import metrics, store
from services.redemption_ledger.config import Settings
from services.redemption_ledger.domain import (
    CouponTerms,
    TillAnswer,
    Usage,
    check_code,
    check_terms,
    normalise_code,
    price_sensitivity,
    validate_at_till,
)
from services.redemption_ledger.ledger import (
    REVERSED_BY_COUPON_EVENT,
    REVERSED_BY_VOID,
    LedgerSlice,
    Outcome,
    redemption_event,
)
from shared import inbox, outbox
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.domain import CustomerCouponInsightsChanged
from shared.contracts.pos import CouponRedeemed, CouponRedemptionReversed, SaleCompleted, SaleVoided
from shared.errors import is_transient

log = structlog.get_logger(__name__)

COUPONS_CONSUMER = "redemption_ledger:coupons"
SALES_CONSUMER = "redemption_ledger:sales"
SWEEP_CHUNK = 500

Outgoing = list[tuple[str, str, BaseModel]]


class CouponExists(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"coupon {code} already exists")


class CouponNotFound(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"no coupon {code}")


class RedemptionLedger:
    """Entry point of the use cases; holds the pool and tells the outbox relay when to publish."""

    def __init__(self, pool: asyncpg.Pool, wake_relay: Callable[[], None], settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._pool = pool
        self._wake_relay = wake_relay
        self._settings = settings
        self._tz = settings.tz
        self._clock = clock

    # --- pos.coupon-redemptions.v1 -------------------------------------------------------------------------

    async def on_coupon_events(self, batch: Sequence[Delivery]) -> None:
        """Redemptions and reversals: one transaction per polled batch."""
        now = self._clock()
        tally: Counter[tuple[str, str]] = Counter()
        async with self._pool.acquire() as conn, conn.transaction():
            events = await _claim(conn, COUPONS_CONSUMER, batch)
            if not events:
                return
            await store.lock_invoices(conn, (e.invoice_number for e in events))
            redeemed = [e for e in events if isinstance(e, CouponRedeemed)]
            ledger = await store.load_slice(
                conn, now=now, invoices={e.invoice_number for e in events},
                codes={normalise_code(e.coupon_code) for e in redeemed},
                customer_codes={(normalise_code(e.coupon_code), e.customer_id) for e in redeemed if e.customer_id},
            )
            for event in events:
                if isinstance(event, CouponRedeemed):
                    outcome, redemption = ledger.redeem(event)
                    tally["redeemed", outcome] += 1
                    if outcome is Outcome.RECORDED:
                        for flag in redemption.flags:
                            tally["flag", flag] += 1
                    elif redemption.source_event_id != event.event_id:
                        log.info("redemption already recorded under another event id", event_id=str(event.event_id),
                                 invoice_number=event.invoice_number, coupon_code=redemption.coupon_code)
                elif isinstance(event, CouponRedemptionReversed):
                    tally[REVERSED_BY_COUPON_EVENT, ledger.reverse(event)] += 1
            await store.append(conn, ledger)
            outgoing = self._redemption_events(ledger, now)
            await outbox.enqueue_many(conn, outgoing)
        _count(tally)
        if outgoing:
            self._wake_relay()

    # --- pos.sales.v1 --------------------------------------------------------------------------------------

    async def on_sale_events(self, batch: Sequence[Delivery]) -> None:
        """sale.completed (purchases of identified customers, for price sensitivity) and sale.voided (reverses
        the invoice's redemptions). sale.returned is not ours: a return gives a coupon back only when the POS
        says so with coupon.redemption_reversed (reason "return")."""
        now = self._clock()
        tally: Counter[tuple[str, str]] = Counter()
        relevant = [d for d in batch if isinstance(d.event, SaleVoided)
                    or (isinstance(d.event, SaleCompleted) and d.event.customer_id is not None)]
        if not relevant:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            events = await _claim(conn, SALES_CONSUMER, relevant)
            if not events:
                return
            await store.lock_invoices(conn, (e.invoice_number for e in events))
            purchases = [
                store.Purchase(e.invoice_number, e.customer_id, e.occurred_at, bool(e.coupon_codes), e.store_id,
                               e.event_id)
                for e in events if isinstance(e, SaleCompleted) and e.customer_id is not None
            ]
            await store.record_purchases(conn, purchases)
            customers = {p.customer_id for p in purchases}
            outgoing: Outgoing = []
            voids = [e for e in events if isinstance(e, SaleVoided)]
            if voids:
                ledger = await store.load_slice(conn, now=now, invoices={v.invoice_number for v in voids}, codes=(),
                                                customer_codes=())
                for void in voids:
                    outcome, _ = ledger.void(void)
                    tally[REVERSED_BY_VOID, outcome] += 1
                await store.append(conn, ledger)
                outgoing += self._redemption_events(ledger, now)
                owners = await store.purchasers(conn, (v.invoice_number for v in voids))
                customers |= {c for v in voids if (c := v.customer_id or owners.get(v.invoice_number))}
            insights = await self._refresh_insights(conn, customers, now)
            outgoing += insights
            await outbox.enqueue_many(conn, outgoing)
        _count(tally)
        metrics.INSIGHTS_PUBLISHED.labels("sale").inc(len(insights))
        if outgoing:
            self._wake_relay()

    def _redemption_events(self, ledger: LedgerSlice, now: datetime) -> Outgoing:
        """The usage-history row of every redemption the batch changed (anonymous ones have no row)."""
        return [
            (topics.COUPON_REDEMPTIONS, r.customer_id,
             redemption_event(r, ledger.reversal_of(r.redemption_id), tz=self._tz, now=now))
            for r in ledger.changed.values() if r.customer_id is not None
        ]

    # --- price sensitivity ---------------------------------------------------------------------------------

    async def _refresh_insights(self, conn: asyncpg.Connection, customers: set[str] | list[str],
                                now: datetime) -> Outgoing:
        """Recompute the customers' price sensitivity; announce those whose figures changed."""
        if not customers:
            return []
        s = self._settings
        current = await store.lock_insights(conn, customers)
        counts = await store.count_purchases(conn, customers, now - timedelta(days=s.coupon_insights_window_days))
        changed: list[store.InsightsRow] = []
        for customer_id in sorted(customers):
            purchases, with_coupon = counts.get(customer_id, (0, 0))
            figures = price_sensitivity(purchases=purchases, purchases_with_coupon=with_coupon,
                                        window_days=s.coupon_insights_window_days,
                                        threshold=s.coupon_only_threshold, min_purchases=s.coupon_only_min_purchases)
            row = current[customer_id]
            if row.version == 0 and purchases == 0:
                continue  # nothing to say about a customer we never saw buy
            if (row.window_days, row.purchases, row.purchases_with_coupon, row.coupon_share,
                    row.coupon_only_buyer) == (figures.window_days, figures.purchases, figures.purchases_with_coupon,
                                               figures.coupon_share, figures.coupon_only_buyer):
                continue
            changed.append(store.InsightsRow(customer_id, row.version + 1, figures.window_days, figures.purchases,
                                             figures.purchases_with_coupon, figures.coupon_share,
                                             figures.coupon_only_buyer))
        await store.save_insights(conn, changed, now=now)
        return [
            (topics.COUPON_REDEMPTIONS, r.customer_id, CustomerCouponInsightsChanged(
                event_id=uuid.uuid4(), occurred_at=now, version=r.version, customer_id=r.customer_id,
                window_days=r.window_days, purchases=r.purchases, purchases_with_coupon=r.purchases_with_coupon,
                coupon_share=f"{r.coupon_share:.4f}", coupon_only_buyer=r.coupon_only_buyer,
                coupon_only_threshold=str(s.coupon_only_threshold), min_purchases=s.coupon_only_min_purchases,
            ))
            for r in changed
        ]

    async def sweep_insights(self, now: datetime | None = None) -> int:
        """Windows age with no event at all: re-evaluate the customers whose purchases left the window since the
        last sweep. Chunked transactions; the progress mark is saved last, so a crash only repeats work."""
        now = now or self._clock()
        cutoff = now - timedelta(days=self._settings.coupon_insights_window_days)
        async with self._pool.acquire() as conn:
            previous = await conn.fetchval("SELECT swept_cutoff FROM insights_sweep")
            published, after_customer = 0, ""
            while True:
                async with conn.transaction():
                    customers = await store.customers_crossing(conn, after=previous, until=cutoff,
                                                               after_customer=after_customer, limit=SWEEP_CHUNK)
                    if not customers:
                        break
                    outgoing = await self._refresh_insights(conn, customers, now)
                    await outbox.enqueue_many(conn, outgoing)
                published += len(outgoing)
                after_customer = customers[-1]
                if outgoing:
                    self._wake_relay()
            async with conn.transaction():
                last = await store.swept_cutoff(conn)
                if last is None or last < cutoff:
                    await store.set_swept_cutoff(conn, cutoff)
        metrics.INSIGHTS_PUBLISHED.labels("sweep").inc(published)
        return published

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                published = await self.sweep_insights()
                log.info("insights sweep done", published=published)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning("insights sweep postponed", error=repr(exc))
                else:
                    log.exception("insights sweep failed")

    async def customer_insights(self, customer_id: str) -> store.InsightsRow:
        """As of now (computed on the spot, so an aged window shows even before the sweep)."""
        s = self._settings
        async with self._pool.acquire() as conn:
            counts = await store.count_purchases(conn, [customer_id],
                                                 self._clock() - timedelta(days=s.coupon_insights_window_days))
            published = await store.insights(conn, customer_id)
        purchases, with_coupon = counts.get(customer_id, (0, 0))
        f = price_sensitivity(purchases=purchases, purchases_with_coupon=with_coupon,
                              window_days=s.coupon_insights_window_days, threshold=s.coupon_only_threshold,
                              min_purchases=s.coupon_only_min_purchases)
        return store.InsightsRow(customer_id, published.version if published else 0, f.window_days, f.purchases,
                                 f.purchases_with_coupon, f.coupon_share, f.coupon_only_buyer)

    # --- the catalog ---------------------------------------------------------------------------------------

    async def create_coupon(self, code: str, terms: CouponTerms, *, actor: str | None) -> store.CatalogEntry:
        code, terms = check_code(code), check_terms(terms)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.insert_coupon(conn, code, terms, now=self._clock(), actor=actor):
                raise CouponExists(code)
            entry = await store.coupon(conn, code)
        assert entry is not None
        return entry

    async def change_coupon(self, code: str, change: Callable[[CouponTerms], CouponTerms], *, what: str,
                            actor: str | None) -> store.CatalogEntry:
        """Apply ``change`` to the coupon's terms (``what``: update, deactivate, activate) as a new revision."""
        code = normalise_code(code)
        async with self._pool.acquire() as conn, conn.transaction():
            entry = await store.coupon_for_update(conn, code)
            if entry is None:
                raise CouponNotFound(code)
            terms = check_terms(change(entry.coupon.terms))
            if terms != entry.coupon.terms:
                await store.update_coupon(conn, code, terms, revision=entry.coupon.revision + 1, now=self._clock(),
                                          change=what, actor=actor)
                entry = await store.coupon(conn, code)
        assert entry is not None
        return entry

    async def set_active(self, code: str, active: bool, *, actor: str | None) -> store.CatalogEntry:
        return await self.change_coupon(code, lambda t: replace(t, active=active),
                                        what="activate" if active else "deactivate", actor=actor)

    async def coupon(self, code: str) -> store.CatalogEntry:
        async with self._pool.acquire() as conn:
            entry = await store.coupon(conn, normalise_code(code))
        if entry is None:
            raise CouponNotFound(normalise_code(code))
        return entry

    async def list_coupons(self, *, after: str | None, limit: int, active: bool | None,
                           campaign: str | None) -> list[store.CatalogEntry]:
        async with self._pool.acquire() as conn:
            return await store.list_coupons(conn, after=after, limit=limit, active=active, campaign=campaign)

    async def validate(self, code: str, *, customer_id: str | None, subtotal: Decimal, currency: str) -> TillAnswer:
        """The till's question: may this code be used now by this customer, and what would it take off?"""
        code = normalise_code(code)
        async with self._pool.acquire() as conn:
            entry = await store.coupon(conn, code)
            usage = await store.usage(conn, code, customer_id) if entry else Usage()
        return validate_at_till(entry.coupon if entry else None, at=self._clock(), customer_id=customer_id,
                                subtotal=subtotal, currency=currency, usage=usage)

    # --- queries -------------------------------------------------------------------------------------------

    async def customer_redemptions(self, customer_id: str, *, before: tuple[datetime, str] | None,
                                   limit: int) -> store.Page:
        async with self._pool.acquire() as conn:
            return await store.customer_redemptions(conn, customer_id, before=before, limit=limit)

    async def flagged_redemptions(self, *, flag: str | None, coupon_code: str | None,
                                  before: tuple[datetime, str] | None, limit: int) -> tuple[store.Page, dict[str, int]]:
        code = normalise_code(coupon_code) if coupon_code else None
        async with self._pool.acquire() as conn:
            page = await store.flagged_redemptions(conn, flag=flag, coupon_code=code, before=before, limit=limit)
            counts = await store.flag_counts(conn, coupon_code=code)
        return page, counts

    async def held_reversals(self, *, limit: int) -> list[Any]:
        async with self._pool.acquire() as conn:
            return await store.held_reversals_unmatched(conn, limit=limit)

    async def coupon_figures(self, code: str, *, used_from: datetime | None,
                             used_until: datetime | None) -> store.Figures:
        code = normalise_code(code)
        async with self._pool.acquire() as conn:
            found = await store.figures(conn, coupon_code=code, used_from=used_from, used_until=used_until)
            known = found[None].redemptions > 0 or await store.coupon(conn, code) is not None
        if not known:
            raise CouponNotFound(code)
        return found[None]

    async def campaign_figures(self, campaign: str, *, used_from: datetime | None,
                               used_until: datetime | None) -> tuple[store.Figures, dict[str, store.Figures]] | None:
        async with self._pool.acquire() as conn:
            found = await store.figures(conn, campaign=campaign, used_from=used_from, used_until=used_until)
            codes = await store.campaign_codes(conn, campaign)
        by_code = {k: v for k, v in found.items() if k is not None}
        if not codes and not by_code:
            return None
        for code in codes:
            by_code.setdefault(code, store.Figures(discount_given={}, discount_reversed={}))
        return found[None], dict(sorted(by_code.items()))


async def _claim(conn: asyncpg.Connection, consumer: str, batch: Sequence[Delivery]) -> list[Any]:
    """The batch's events not applied before, each once (the POS may send one event twice in a batch too)."""
    new = await inbox.claim_many(conn, consumer, (d.event.event_id for d in batch))
    events = []
    for d in batch:
        if d.event.event_id in new:
            new.discard(d.event.event_id)
            events.append(d.event)
    return events


def _count(tally: Counter[tuple[str, str]]) -> None:
    """Metrics only after the commit: a rolled-back, retried batch is not counted twice."""
    for (kind, what), n in tally.items():
        if kind == "redeemed":
            metrics.REDEMPTIONS.labels(what).inc(n)
        elif kind == "flag":
            metrics.FLAGGED.labels(what).inc(n)
        else:
            metrics.REVERSALS.labels(kind, what).inc(n)
