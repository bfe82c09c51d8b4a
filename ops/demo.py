"""`make demo`: on the running stack, load segments, create coupons and gift cards through the management
APIs, run the POS simulator, wait until the read model caught up, then print the Marketing tab URLs of a few
telling customers and show one tab in the terminal. The stack keeps running (`make down` stops it)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console

from ops import simulator
from ops.cli import env, render_tab

console = Console()
SEED = 7
CUSTOMERS = 300
DAYS = 180

COUPONS = [
    {"code": "FALL10", "name": "Fall 10% off", "discount_type": "percent", "discount_value": "10",
     "campaign": "fall-2026"},
    {"code": "SAVE5", "name": "$5 off any purchase", "discount_type": "amount", "discount_value": "5.00",
     "currency": "USD", "campaign": "everyday"},
    {"code": "WELCOME15", "name": "Welcome 15% off", "discount_type": "percent", "discount_value": "15",
     "campaign": "onboarding", "max_redemptions_per_customer": 1},
    {"code": "VIP20", "name": "VIP 20% off", "discount_type": "percent", "discount_value": "20", "campaign": "vip"},
]


def api(e: dict[str, str], var: str) -> httpx.Client:
    return httpx.Client(base_url=e[var], headers={"Authorization": f"Bearer {e['MARKETING_API_KEY']}"}, timeout=30)


def wait_ready(e: dict[str, str]) -> None:
    for var in ("GIFTCARD_LEDGER_URL", "REDEMPTION_LEDGER_URL", "SEGMENT_ENGINE_URL", "MARKETING_VIEW_URL"):
        deadline = time.monotonic() + 60
        while httpx.get(e[var] + "/readyz", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"{var} is not ready; see .local/logs/")
            time.sleep(0.5)


def load_segments(e: dict[str, str]) -> list[dict[str, Any]]:
    with api(e, "SEGMENT_ENGINE_URL") as c:
        body = c.get("/v1/segments").raise_for_status().json()
    segments = body["items"] if isinstance(body, dict) else body
    console.print(f"segments: {', '.join(s['name'] for s in segments)}")
    return segments


def create_coupons(e: dict[str, str]) -> None:
    valid_from = (date.today() - timedelta(days=DAYS + 30)).isoformat()
    with api(e, "REDEMPTION_LEDGER_URL") as c:
        for coupon in COUPONS:
            response = c.post("/v1/coupons", json={**coupon, "valid_from": valid_from})
            if response.status_code not in (200, 201, 409):
                raise SystemExit(f"creating coupon {coupon['code']}: {response.status_code} {response.text}")
    console.print(f"coupons: {', '.join(c['code'] for c in COUPONS)} (OLDPROMO stays unknown: flagged when used)")


def issue_gift_cards(e: dict[str, str], customers: list[str]) -> None:
    with api(e, "GIFTCARD_LEDGER_URL") as c:
        for i, customer in enumerate(customers):
            body = {"customer_id": customer, "amount": ["50.00", "100.00", "25.00"][i % 3], "currency": "USD"}
            if i % 2 == 0:
                body["expires_on"] = (date.today() + timedelta(days=20 + 200 * i)).isoformat()
            response = c.post("/v1/gift-cards", json=body, headers={"Idempotency-Key": f"demo-card-{customer}"})
            if response.status_code not in (200, 201):
                raise SystemExit(f"issuing a card: {response.status_code} {response.text}")
            card = response.json()
            if i == 0:
                c.post(f"/v1/gift-cards/{card['card_id']}/reload", json={"amount": "20.00", "reason": "promotion"},
                       headers={"Idempotency-Key": f"demo-reload-{customer}"}).raise_for_status()
    console.print(f"gift cards issued through the API to {', '.join(customers)} (numbers shown once, not here)")


def run_simulator(e: dict[str, str], sim: simulator.Simulation) -> None:
    console.print(f"POS simulator: seed {SEED}, {CUSTOMERS} customers, {DAYS} days, {len(sim.messages)} events")
    asyncio.run(simulator.publish(sim.messages, bootstrap=e["KAFKA_BOOTSTRAP_SERVERS"]))


def tab(e: dict[str, str], customer: str) -> dict[str, Any]:
    with api(e, "MARKETING_VIEW_URL") as c:
        return c.get(f"/v1/customers/{customer}/marketing").raise_for_status().json()


def wait_caught_up(e: dict[str, str], sim: simulator.Simulation) -> None:
    """The pipeline has caught up when the last customers' tabs stop changing."""
    watched = list(sim.customers)[-5:]
    previous: list[Any] = []
    deadline = time.monotonic() + 180
    with console.status("waiting for the services to process the traffic"):
        while time.monotonic() < deadline:
            current = [{k: v for k, v in tab(e, c).items() if k != "as_of"} for c in watched]
            if current == previous and any(t["segments"] or t["coupon_usage"]["items"] for t in current):
                return
            previous = current
            time.sleep(3)


def sweep(e: dict[str, str]) -> None:
    with api(e, "SEGMENT_ENGINE_URL") as c:
        c.post("/v1/segments/sweep", json={}).raise_for_status()


def pick(e: dict[str, str], sim: simulator.Simulation) -> list[tuple[str, str]]:
    """A handful of telling customers: each habit's first customer whose tab shows the expected segment."""
    wanted = [("new", "New Customer", "a new customer"), ("frequent", "Frequent Buyer", "a frequent buyer"),
              ("big_spender", "High Value", "a big spender"), ("lapsing", "At-Risk", "an at-risk customer")]
    chosen: list[tuple[str, str]] = []
    for habit, segment, label in wanted:
        candidates = [c for c, h in sim.customers.items() if h == habit][:25]
        match = next((c for c in candidates if segment in {s["name"] for s in tab(e, c)["segments"]}), None)
        if match or candidates:
            chosen.append((match or candidates[0], label + ("" if match else f" (not yet in {segment})")))
    both = next((c for c in sim.cards if tab(e, c)["coupon_usage"]["items"]), None)
    if both:
        chosen.append((both, "gift cards and coupons"))
    return chosen


def main() -> None:
    e = env()
    os.environ.update({k: v for k, v in e.items() if k not in os.environ})
    wait_ready(e)
    load_segments(e)
    create_coupons(e)
    sim = simulator.simulate(simulator.Config(customers=CUSTOMERS, days=DAYS, seed=SEED, now=datetime.now(UTC),
                                              timezone=e.get("BUSINESS_TIMEZONE", "America/New_York")))
    issue_gift_cards(e, list(sim.customers)[:3])
    run_simulator(e, sim)
    wait_caught_up(e, sim)
    sweep(e)
    chosen = pick(e, sim)
    console.rule("Telling customers")
    for customer, why in chosen:  # plain lines: URLs must not be cut by the terminal's width
        console.print(f"[bold]{customer}[/bold]  {why}", soft_wrap=True)
        console.print(f"    tab page  {e['MARKETING_VIEW_URL']}/customers/{customer}/marketing", soft_wrap=True)
        console.print(f"    JSON      {e['MARKETING_VIEW_URL']}/v1/customers/{customer}/marketing", soft_wrap=True)
    console.print(f"API key (dev, every scope): [bold]{e['MARKETING_API_KEY']}[/bold]  "
                  f"(send 'Authorization: Bearer <key>'; in a browser open the page with ?key=<key> once)")
    if chosen:
        render_tab(tab(e, chosen[-1][0]))
    console.print("The stack keeps running; `make down` stops it.")


if __name__ == "__main__":
    main()
