"""`marketing`: run, watch and operate the Marketing tab backend from a terminal.

Reads its endpoints and key from the environment, or from `.local/stack.env` that `make up` writes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.contracts import topics as topic_names

ROOT = Path(__file__).resolve().parents[1]
console = Console()
app = typer.Typer(help="Operate the Customer Marketing tab backend.", no_args_is_help=True)
segments_app = typer.Typer(help="Customer segments (segment_engine).", no_args_is_help=True)
view_app = typer.Typer(help="The Redis read model (marketing_view).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics.", no_args_is_help=True)
giftcards_app = typer.Typer(help="Gift cards (giftcard_ledger).", no_args_is_help=True)
app.add_typer(segments_app, name="segments")
app.add_typer(view_app, name="view")
app.add_typer(dlq_app, name="dlq")
app.add_typer(giftcards_app, name="giftcards")


def env() -> dict[str, str]:
    """The process environment over the local stack's .local/stack.env."""
    values: dict[str, str] = {}
    stack_env = ROOT / ".local" / "stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = value.strip("'")
    values.update({k: v for k, v in os.environ.items() if k.isupper()})
    return values


def client(service_var: str) -> httpx.Client:
    e = env()
    if service_var not in e or "MARKETING_API_KEY" not in e:
        console.print(f"[red]{service_var} or MARKETING_API_KEY is not set: run `make up` or export them[/red]")
        raise typer.Exit(2)
    return httpx.Client(base_url=e[service_var], headers={"Authorization": f"Bearer {e['MARKETING_API_KEY']}"},
                        timeout=30)


def call(service_var: str, method: str, path: str, **kwargs: Any) -> Any:
    with client(service_var) as c:
        response = c.request(method, path, **kwargs)
    if response.status_code >= 400:
        console.print(f"[red]{method} {path}: {response.status_code} {response.text[:500]}[/red]")
        raise typer.Exit(1)
    return response.json() if response.content else None


def stack(*args: str) -> None:
    raise typer.Exit(subprocess.call([sys.executable, str(ROOT / "deploy/local/stack.py"), *args], cwd=ROOT))


@app.command()
def up() -> None:
    """Start the local stack (Kafka, Postgres, Redis, the four services): only what is not running."""
    stack("up")


@app.command()
def down() -> None:
    """Stop what `up` started."""
    stack("down")


@app.command()
def status() -> None:
    """What is up, and where."""
    stack("status")


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(help="number of customers")] = 200,
    days: Annotated[int, typer.Option(help="days of history")] = 120,
    seed: Annotated[int, typer.Option(help="reproduce a run with the same seed")] = 7,
    rate: Annotated[float, typer.Option(help="events per second; 0 = as fast as possible")] = 0,
) -> None:
    """Publish realistic POS traffic to Kafka (progress bar)."""
    from ops import simulator

    os.environ.update({k: v for k, v in env().items() if k not in os.environ})
    simulator.main(["--customers", str(customers), "--days", str(days), "--seed", str(seed), "--rate", str(rate)])


@app.command()
def show(customer_id: str) -> None:
    """A customer's Marketing tab as three tables (and the insights)."""
    render_tab(call("MARKETING_VIEW_URL", "GET", f"/v1/customers/{customer_id}/marketing"))


def render_tab(tab: dict[str, Any]) -> None:
    console.rule(f"Marketing tab of {tab['customer_id']}  (as of {tab['as_of']})")
    segments = Table("Segment Name", "Date Assigned", "Assigned By", "Notes", title="Customer Segments",
                     title_justify="left")
    for s in tab["segments"]:
        segments.add_row(s["name"], s["date_assigned"], s["assigned_by"], s.get("notes") or "")
    console.print(segments if tab["segments"] else "[dim]Customer Segments: not in any segment yet[/dim]")
    coupons = Table("Coupon Code", "Coupon Name", "Discount Amount", "Date Used", "Invoice Number", "Status",
                    title="Coupon Usage History", title_justify="left")
    for c in tab["coupon_usage"]["items"]:
        coupons.add_row(c["coupon_code"], c["coupon_name"], c["discount"]["display"], c["used_at"],
                        c["invoice_number"], c.get("status", ""))
    console.print(coupons if tab["coupon_usage"]["items"] else "[dim]Coupon Usage History: no coupons used[/dim]")
    cards = Table("Card Number", "Original Balance", "Current Balance", "Status", "Issue Date", "Expiration Date",
                  title="Gift Cards", title_justify="left")
    for g in tab["gift_cards"]:
        cards.add_row(g["card_number_masked"], g["original_balance"], g["current_balance"], g["status"],
                      g["issue_date"], g.get("expiration_date") or "")
    console.print(cards if tab["gift_cards"] else "[dim]Gift Cards: none[/dim]")
    if tab.get("insights"):
        console.print("Insights: " + ", ".join(f"{k}={v}" for k, v in tab["insights"].items()))


@segments_app.command("list")
def segments_list() -> None:
    """Every segment with its version."""
    body = call("SEGMENT_ENGINE_URL", "GET", "/v1/segments")
    items = body["items"] if isinstance(body, dict) else body
    table = Table("Segment", "Name", "Version", "Members", "Description")
    for s in items:
        table.add_row(s["segment_id"], s["name"], str(s.get("version", "")), str(s.get("member_count", "")),
                      s.get("description", "") or "")
    console.print(table)


@segments_app.command("apply")
def segments_apply(path: Path) -> None:
    """Apply segments from a YAML (or JSON) file, idempotently (segments as code)."""
    document = yaml.safe_load(path.read_text())
    result = call("SEGMENT_ENGINE_URL", "POST", "/v1/segments/apply", json=document)
    console.print_json(data=result)
    for job in (result or {}).get("backfills", []) if isinstance(result, dict) else []:
        follow_backfill(job)


def follow_backfill(job: dict[str, Any]) -> None:
    """A progress bar for a backfill job, from its status resource."""
    url = job.get("url") or job.get("href")
    if not url:
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task(f"backfill {job.get('segment_id', '')}", total=None)
        while True:
            state = call("SEGMENT_ENGINE_URL", "GET", url)
            bar.update(task, total=state.get("total") or None, completed=state.get("done", 0))
            if state.get("status") in ("finished", "failed", "done"):
                break
            time.sleep(0.5)


@segments_app.command("preview")
def segments_preview(segment_id: str, rule_file: Path) -> None:
    """Who would enter and who would leave the segment under the rule in RULE_FILE (YAML or JSON)."""
    rule = yaml.safe_load(rule_file.read_text())
    rule = rule.get("rule", rule) if isinstance(rule, dict) else rule
    console.print_json(data=call("SEGMENT_ENGINE_URL", "POST", f"/v1/segments/{segment_id}/preview",
                                 json={"rule": rule}))


@view_app.command("rebuild")
def view_rebuild() -> None:
    """Rebuild the read model from the full history into a fresh key space, then switch to it."""
    e = {**os.environ, **{k: v for k, v in env().items() if k not in os.environ}}
    raise typer.Exit(subprocess.call([sys.executable, "-m", "services.marketing_view", "rebuild"], env=e, cwd=ROOT))


async def _read_dead_letters(bootstrap: str, topic: str, *, group: str | None) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=300)
            idle = 0 if batch else idle + 1
            for part in batch.values():
                records.extend(part)
        if group and records:
            await consumer.commit()
    finally:
        await consumer.stop()
    return records


def _dlq_topics(topic: str | None) -> list[str]:
    inbound = [topic] if topic else list(topic_names.INBOUND_TOPICS)
    return [topic_names.dlq(t) for t in inbound]


@dlq_app.command("list")
def dlq_list(topic: Annotated[str | None, typer.Option(help="an inbound topic, e.g. pos.sales.v1")] = None) -> None:
    """Dead letters with their reason and origin (never their payload: it may hold card numbers)."""
    e = env()
    table = Table("DLQ topic", "Origin", "Failed at", "Reason")
    count = 0
    for dlq in _dlq_topics(topic):
        for r in asyncio.run(_read_dead_letters(e["KAFKA_BOOTSTRAP_SERVERS"], dlq, group=None)):
            h = {k: v.decode(errors="replace") for k, v in r.headers}
            origin = f"{h.get('dlq.original.topic')}[{h.get('dlq.original.partition')}]@{h.get('dlq.original.offset')}"
            table.add_row(dlq, origin, h.get("dlq.failed_at", ""), h.get("dlq.reason", "")[:120])
            count += 1
    console.print(table)
    console.print(f"{count} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(topic: Annotated[str | None, typer.Option(help="an inbound topic, e.g. pos.sales.v1")] = None) -> None:
    """Publish dead letters back to their original topic (after a fix). Each is replayed once: the replay
    position is kept in the consumer group `dlq-replay`; consumers' inboxes make a repeat harmless anyway."""
    from aiokafka import AIOKafkaProducer

    e = env()

    async def replay() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=e["KAFKA_BOOTSTRAP_SERVERS"], acks="all",
                                    enable_idempotence=True)
        await producer.start()
        sent = 0
        try:
            for dlq in _dlq_topics(topic):
                for r in await _read_dead_letters(e["KAFKA_BOOTSTRAP_SERVERS"], dlq, group="dlq-replay"):
                    h = dict(r.headers)
                    original = h.get("dlq.original.topic", b"").decode() or dlq.removesuffix(topic_names.DLQ_SUFFIX)
                    headers = [("dlq.replayed_from", f"{dlq}@{r.partition}:{r.offset}".encode())]
                    await producer.send_and_wait(e.get("KAFKA_TOPIC_PREFIX", "") + original, r.value, key=r.key,
                                                 headers=headers)
                    sent += 1
        finally:
            await producer.stop()
        return sent

    console.print(f"replayed {asyncio.run(replay())} dead letter(s)")


@giftcards_app.command("expiring")
def giftcards_expiring(days: Annotated[int, typer.Option(help="within this many days")] = 30) -> None:
    """Cards with a balance that expire within N days (for reminders)."""
    body = call("GIFTCARD_LEDGER_URL", "GET", "/v1/gift-cards/expiring", params={"within_days": days})
    items = body["items"] if isinstance(body, dict) else body
    table = Table("Card", "Customer", "Balance", "Expires")
    for c in items:
        table.add_row(c.get("card_number_masked", c.get("card_id", "")), c.get("customer_id") or "",
                      f"{c.get('current_balance')} {c.get('currency', '')}", c.get("expiration_date") or
                      c.get("expires_on") or "")
    console.print(table)
    console.print(orjson.dumps({"count": len(items)}).decode())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
