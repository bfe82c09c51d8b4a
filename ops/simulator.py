"""POS traffic simulator: realistic sale, coupon, gift card and CRM events through real Kafka.

Customers have habits (frequent, lapsing, big spender, new, occasional); they shop in several stores and
categories, use coupons, buy, reload, spend and get refunds on gift cards, void and return sales. Some events
arrive late (published after newer ones) and some twice, as real tills do. Everything follows from the seed
(and the `now` anchor), so a run can be reproduced exactly:

    python -m ops.simulator --customers 300 --days 180 --seed 7 [--rate 500] [--now 2026-12-03T12:00:00Z]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from shared.contracts import topics

STORES = ("S-001", "S-002", "S-003", "S-004", "S-005")
CATEGORIES = {  # category -> (min, max) unit price
    "Footwear": (39, 180), "Outerwear": (49, 320), "Socks": (3, 12), "Accessories": (9, 75),
    "Denim": (39, 140), "Tops": (12, 65), "Kids": (8, 45), "Sportswear": (19, 120),
}
COUPONS = {  # code -> (type, value)
    "FALL10": ("percent", Decimal("10")), "SAVE5": ("amount", Decimal("5.00")),
    "WELCOME15": ("percent", Decimal("15")), "VIP20": ("percent", Decimal("20")),
}
UNKNOWN_COUPON = "OLDPROMO"  # not in the catalog: recorded and flagged by the ledger
TIERS = ("Bronze", "Silver", "Gold", "Platinum")
CENT = Decimal("0.01")
TAX = Decimal("0.08")


@dataclass(frozen=True)
class Config:
    customers: int = 200
    days: int = 120
    seed: int = 7
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    timezone: str = "America/New_York"
    duplicate_rate: float = 0.02
    late_rate: float = 0.03
    customer_prefix: str = "C-"


@dataclass
class Message:
    topic: str
    key: bytes
    event: dict[str, Any]
    occurred: datetime


@dataclass
class Habit:
    name: str
    visits_per_week: float  # before the recent period
    recent_factor: float  # multiplier of the visit rate in the last 60 days
    basket: tuple[int, int]  # lines per sale
    price_factor: float
    coupon_rate: float


HABITS = {
    "frequent": Habit("frequent", 2.5, 1.0, (1, 3), 1.0, 0.15),
    "lapsing": Habit("lapsing", 1.5, 0.1, (1, 3), 1.0, 0.2),
    "big_spender": Habit("big_spender", 0.8, 1.0, (3, 6), 2.5, 0.05),
    "coupon_hunter": Habit("coupon_hunter", 1.0, 1.0, (1, 2), 0.8, 0.9),
    "occasional": Habit("occasional", 0.25, 1.0, (1, 2), 1.0, 0.1),
    "new": Habit("new", 1.0, 1.0, (1, 3), 1.0, 0.3),
}
HABIT_MIX = (("frequent", 0.15), ("lapsing", 0.12), ("big_spender", 0.08), ("coupon_hunter", 0.08),
             ("occasional", 0.42), ("new", 0.15))


@dataclass
class Card:
    number: str
    balance: Decimal
    currency: str = "USD"
    redemptions: dict[str, Decimal] = field(default_factory=dict)  # invoice -> amount


@dataclass
class Simulation:
    messages: list[Message]
    customers: dict[str, str]  # customer id -> habit
    cards: dict[str, list[str]]  # customer id -> last 4 of their cards (never the full number in reports)


def money(value: Decimal) -> str:
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):.2f}"


class _Generator:
    def __init__(self, config: Config) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.tz = ZoneInfo(config.timezone)
        self.messages: list[Message] = []
        self.invoice_seq = 0
        self.cards: dict[str, list[Card]] = {}

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, topic: str, key: str, occurred: datetime, event_type: str, store: str | None, **body: Any) -> None:
        event = {"event_id": self.uuid(), "event_type": event_type, "schema_version": 1,
                 "occurred_at": occurred.isoformat(), "store_id": store, **body}
        self.messages.append(Message(topic, key.encode(), event, occurred))

    def invoice(self, prefix: str = "INV") -> str:
        self.invoice_seq += 1
        return f"{prefix}-{self.c.seed:04d}-{self.invoice_seq:07d}"

    def moment(self, day: date) -> datetime:
        minutes = self.rng.randrange(9 * 60, 21 * 60)
        return datetime.combine(day, time(minutes // 60, minutes % 60, self.rng.randrange(60)), self.tz)

    def run(self) -> Simulation:
        today = self.c.now.astimezone(self.tz).date()
        start = today - timedelta(days=self.c.days)
        habits: dict[str, str] = {}
        names, weights = zip(*HABIT_MIX, strict=True)
        for i in range(self.c.customers):
            customer = f"{self.c.customer_prefix}{10000 + i}"
            habit = HABITS[self.rng.choices(names, weights)[0]]
            habits[customer] = habit.name
            self.customer(customer, habit, start, today)
        self.disorder()
        reported = {c: [card.number[-4:] for card in cards] for c, cards in self.cards.items()}
        return Simulation(self.messages, habits, reported)

    def customer(self, customer: str, habit: Habit, start: date, today: date) -> None:
        rng = self.rng
        if habit.name == "new":
            signup = today - timedelta(days=rng.randrange(0, 25))
        else:
            signup = start - timedelta(days=rng.randrange(30, 900))
        home = rng.choice(STORES)
        favourite_stores = [home, home, home, rng.choice(STORES)]
        tier = rng.choices((None, *TIERS), (0.3, 0.3, 0.25, 0.1, 0.05))[0]
        if habit.name == "big_spender":
            tier = rng.choice(("Gold", "Platinum"))
        registered = self.moment(signup)
        self.emit(topics.CRM_CUSTOMERS, customer, registered, "customer.registered", None, customer_id=customer,
                  registered_at=registered.isoformat(), home_store_id=home, loyalty_tier=tier)
        if tier and rng.random() < 0.1:
            new_tier = TIERS[min(TIERS.index(tier) + 1, len(TIERS) - 1)]
            when = self.moment(max(signup, start) + timedelta(days=rng.randrange(1, max(2, self.c.days))))
            if when.date() <= today:
                self.emit(topics.CRM_CUSTOMERS, customer, when, "customer.loyalty_tier_changed", None,
                          customer_id=customer, tier=new_tier, previous_tier=tier)
        if rng.random() < (0.5 if habit.name in ("big_spender", "frequent") else 0.15):
            self.activate_card(customer, self.moment(max(signup, start)), rng.choice(favourite_stores))
        day = max(signup, start)
        while day <= today:
            recent = (today - day).days < 60
            rate = habit.visits_per_week * (habit.recent_factor if recent else 1.0) / 7
            if rng.random() < rate:
                self.sale(customer, habit, self.moment(day), rng.choice(favourite_stores))
            day += timedelta(days=1)

    def activate_card(self, customer: str, when: datetime, store: str) -> None:
        number = "60349" + "".join(str(self.rng.randrange(10)) for _ in range(11))
        amount = Decimal(self.rng.choice((25, 50, 75, 100, 150)))
        card = Card(number, amount)
        self.cards.setdefault(customer, []).append(card)
        expires = (when + timedelta(days=365)).date().isoformat() if self.rng.random() < 0.7 else None
        self.emit(topics.POS_GIFTCARD_ACTIVITY, number, when, "giftcard.activated", store, card_number=number,
                  amount=money(amount), currency="USD", customer_id=customer, expires_on=expires,
                  invoice_number=self.invoice())

    def sale(self, customer: str, habit: Habit, when: datetime, store: str) -> None:
        rng = self.rng
        invoice = self.invoice()
        lines = []
        for _ in range(rng.randint(*habit.basket)):
            category = rng.choice(list(CATEGORIES))
            low, high = CATEGORIES[category]
            cents = Decimal(rng.randrange(low * 100, high * 100))
            unit = (cents / 100 * Decimal(str(habit.price_factor))).quantize(CENT)
            quantity = rng.choice((1, 1, 1, 2, 3))
            lines.append({"sku": f"SKU-{rng.randrange(10000, 99999)}", "category": category, "quantity": quantity,
                          "unit_price": money(unit), "line_total": money(unit * quantity)})
        subtotal = sum(Decimal(line["line_total"]) for line in lines)
        coupon_codes: list[str] = []
        discount = Decimal("0.00")
        if rng.random() < habit.coupon_rate:
            code = UNKNOWN_COUPON if rng.random() < 0.05 else rng.choice(list(COUPONS))
            kind, value = COUPONS.get(code, ("amount", Decimal("3.00")))
            discount = min(subtotal, value if kind == "amount" else (subtotal * value / 100).quantize(CENT))
            coupon_codes.append(code)
        tax = ((subtotal - discount) * TAX).quantize(CENT)
        total = subtotal - discount + tax
        tenders = []
        card = next((c for c in self.cards.get(customer, []) if c.balance > 0), None)
        gift_part = Decimal("0.00")
        if card and rng.random() < 0.5:
            gift_part = min(card.balance, total)
            # Now and then a till asks for more than the card holds: the ledger rejects it.
            asked = gift_part + Decimal("5.00") if rng.random() < 0.03 else gift_part
            self.emit(topics.POS_GIFTCARD_ACTIVITY, card.number, when, "giftcard.redeemed", store,
                      card_number=card.number, amount=money(asked), currency="USD", invoice_number=invoice,
                      customer_id=customer)
            if asked == gift_part:
                card.balance -= gift_part
                card.redemptions[invoice] = gift_part
                tenders.append({"type": "gift_card", "amount": money(gift_part)})
            else:
                gift_part = Decimal("0.00")
        tenders.append({"type": rng.choice(("credit_card", "cash")), "amount": money(total - gift_part)})
        self.emit(topics.POS_SALES, customer, when, "sale.completed", store, register_id=f"R-{rng.randrange(1, 6):02d}",
                  invoice_number=invoice, customer_id=customer, currency="USD", lines=lines,
                  subtotal=money(subtotal), discount_total=money(discount), tax_total=money(tax), total=money(total),
                  coupon_codes=coupon_codes, tenders=tenders)
        for code in coupon_codes:
            self.emit(topics.POS_COUPON_REDEMPTIONS, customer, when, "coupon.redeemed", store,
                      register_id="R-01", invoice_number=invoice, customer_id=customer, coupon_code=code,
                      discount_amount=money(discount), currency="USD")
        after = rng.random()
        if after < 0.02:  # voided at the till a few minutes later
            later = when + timedelta(minutes=rng.randrange(2, 30))
            self.emit(topics.POS_SALES, customer, later, "sale.voided", store, invoice_number=invoice,
                      customer_id=customer, reason="customer changed mind at till")
            for code in coupon_codes:
                if rng.random() < 0.5:  # some tills also reverse the coupon explicitly: it must count once
                    self.emit(topics.POS_COUPON_REDEMPTIONS, customer, later, "coupon.redemption_reversed", store,
                              invoice_number=invoice, coupon_code=code, customer_id=customer, reason="void")
            if card and invoice in card.redemptions:
                self.refund(card, invoice, card.redemptions[invoice], later, store)
        elif after < 0.06:  # returned days later: one line back
            later = when + timedelta(days=rng.randrange(1, 20), minutes=rng.randrange(60))
            if later <= self.c.now:
                line = lines[0]
                refund = (Decimal(line["line_total"]) * (1 + TAX)).quantize(CENT)
                returned = {"sku": line["sku"], "category": line["category"], "quantity": line["quantity"],
                            "line_total": line["line_total"]}
                self.emit(topics.POS_SALES, customer, later, "sale.returned", rng.choice(STORES),
                          invoice_number=self.invoice("RET"), original_invoice_number=invoice,
                          customer_id=customer, currency="USD", lines=[returned], refund_total=money(refund))
                if card and invoice in card.redemptions:
                    self.refund(card, invoice, min(refund, card.redemptions[invoice]), later, store)
        if card and card.balance < 20 and rng.random() < 0.3:
            amount = Decimal(rng.choice((20, 50)))
            card.balance += amount
            self.emit(topics.POS_GIFTCARD_ACTIVITY, card.number, when + timedelta(minutes=1), "giftcard.reloaded",
                      store, card_number=card.number, amount=money(amount), currency="USD",
                      invoice_number=self.invoice(), customer_id=customer)

    def refund(self, card: Card, invoice: str, amount: Decimal, when: datetime, store: str) -> None:
        if amount <= 0 or when > self.c.now:
            return
        card.balance += amount
        card.redemptions[invoice] -= amount
        self.emit(topics.POS_GIFTCARD_ACTIVITY, card.number, when, "giftcard.refunded", store,
                  card_number=card.number, amount=money(amount), currency="USD",
                  invoice_number=self.invoice("RET"), original_invoice_number=invoice)

    def disorder(self) -> None:
        """Time order, then some sale, coupon and CRM events late (moved later in the stream), and some
        events published twice."""
        self.messages = [m for m in self.messages if m.occurred <= self.c.now]
        self.messages.sort(key=lambda m: m.occurred)
        out = list(self.messages)
        for i in range(len(out) - 1, -1, -1):
            # Gift card activity stays in order: a till cannot spend a card before it sold it.
            if self.rng.random() < self.c.late_rate and out[i].topic != topics.POS_GIFTCARD_ACTIVITY:
                late = out.pop(i)
                out.insert(min(len(out), i + self.rng.randrange(2, 50)), late)
        final: list[Message] = []
        for m in out:
            final.append(m)
            if self.rng.random() < self.c.duplicate_rate:
                final.append(m)
        self.messages = final


def simulate(config: Config) -> Simulation:
    """The whole run as a list of messages in publication order (pure: no I/O)."""
    return _Generator(config).run()


async def publish(messages: list[Message], *, bootstrap: str, prefix: str = "", rate: float = 0,
                  progress: bool = True) -> None:
    """Publish in order, at `rate` events per second (0: as fast as Kafka takes them)."""
    from aiokafka import AIOKafkaProducer
    from rich.progress import Progress

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    started = asyncio.get_running_loop().time()
    try:
        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task("publishing POS events", total=len(messages))
            pending = []
            for i, m in enumerate(messages, 1):
                pending.append(await producer.send(prefix + m.topic, orjson.dumps(m.event), key=m.key))
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending.clear()
                if rate > 0 and i % 50 == 0:
                    ahead = i / rate - (asyncio.get_running_loop().time() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if i % 200 == 0 or i == len(messages):
                    bar.update(task, completed=i)
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> Simulation:
    parser = argparse.ArgumentParser(prog="python -m ops.simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=int, default=120, help="days of history")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0, help="events per second (0: as fast as possible)")
    parser.add_argument("--now", type=datetime.fromisoformat, default=None, help="anchor time (reproducibility)")
    parser.add_argument("--duplicates", type=float, default=0.02, help="share of events published twice")
    parser.add_argument("--late", type=float, default=0.03, help="share of events published late")
    args = parser.parse_args(argv)
    from shared.settings import CommonSettings

    settings = CommonSettings()
    config = Config(customers=args.customers, days=args.days, seed=args.seed, now=args.now or datetime.now(UTC),
                    timezone=settings.business_timezone, duplicate_rate=args.duplicates, late_rate=args.late)
    sim = simulate(config)
    print(f"seed={config.seed} customers={config.customers} days={config.days} events={len(sim.messages)}")
    asyncio.run(publish(sim.messages, bootstrap=settings.kafka_bootstrap_servers,
                        prefix=settings.kafka_topic_prefix, rate=args.rate))
    return sim


if __name__ == "__main__":
    main()
