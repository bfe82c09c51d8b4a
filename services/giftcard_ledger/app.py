"""Wiring of giftcard_ledger: Kafka subscribers, HTTP routes, lifespan, the sweep loop. No logic here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.giftcard_ledger.api import router
from services.giftcard_ledger.cardnumbers import CardNumberHasher
from services.giftcard_ledger.config import Settings
from services.giftcard_ledger.domain import Policy
from services.giftcard_ledger.handlers import GiftCardLedger, IdempotencyMismatch
from shared.clock import Clock, SystemClock
from shared.contracts import topics
from shared.contracts.domain import GiftCardActivityRejected, GiftCardChanged
from shared.contracts.pos import GiftCardEvent
from shared.http import create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "giftcard_ledger"
MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger(__name__)

_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, asyncpg.DeadlockDetectedError,
                asyncpg.SerializationError)


def hasher_of(settings: Settings) -> CardNumberHasher:
    if settings.card_hmac_key is None:
        raise RuntimeError("GIFTCARD_LEDGER_CARD_HMAC_KEY is required: the secret key card numbers are hashed with")
    return CardNumberHasher(settings.card_hmac_key.get_secret_value().encode(),
                            [k.get_secret_value().encode() for k in settings.card_hmac_previous_keys])


def policy_of(settings: Settings) -> Policy:
    return Policy(business_tz=ZoneInfo(settings.business_timezone),
                  expired_redemption=settings.expired_redemption_policy, max_balance=settings.max_card_balance)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The service; ``clock`` is the time it lives in (tests pass a ``FixedClock``)."""
    policy = policy_of(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hasher = hasher_of(settings)  # fails fast, before connecting anything, without the key
        runtime = await open_runtime(name=NAME, settings=settings, schema=settings.db_schema,
                                     database_url=settings.db_url, migrations_dir=MIGRATIONS,
                                     pool_size=settings.db_pool_size)
        assert runtime.pool is not None and runtime.relay is not None
        ledger = GiftCardLedger(runtime.pool, runtime.relay.wake, hasher, policy, clock or SystemClock(),
                                idempotency_retention=timedelta(days=settings.idempotency_retention_days))
        app.state.ledger = ledger
        add_runtime_checks(app, runtime)
        await runtime.start_consumer({topics.POS_GIFTCARD_ACTIVITY: ledger.on_giftcard_activity},
                                     group_id=settings.consumer_group)
        runtime.spawn(_sweep_loop(ledger, settings.sweep_interval_s), name=f"{NAME}-sweep")
        try:
            yield
        finally:
            await runtime.close()

    app = create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="giftcard_ledger",
        description="Gift cards on an append-only ledger: issue, reload, redeem, refund, adjust, expire, "
        "deactivate, re-assign. Card numbers are stored only as a keyed HMAC plus the last 4 characters.",
    )
    app.include_router(router)

    @app.exception_handler(IdempotencyMismatch)
    async def idempotency_mismatch(_: Request, __: IdempotencyMismatch) -> JSONResponse:
        return JSONResponse({"detail": "this Idempotency-Key was already used with a different request",
                             "reason": "idempotency_key_reused"}, status_code=422)

    for exc_type in _UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    return app


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable during a request", error=repr(exc)[:200])
    return JSONResponse({"detail": "temporarily unavailable, retry with the same Idempotency-Key"},
                        status_code=503, headers={"Retry-After": "1"})


async def _sweep_loop(ledger: GiftCardLedger, interval_s: float) -> None:
    """Expire what the calendar expired, even when nothing else happens (first pass at start-up)."""
    while True:
        try:
            await ledger.sweep()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry sweep failed; next attempt at the next interval")
        await asyncio.sleep(interval_s)


def asyncapi(settings: Settings) -> AsyncAPI:
    """The Kafka side of the service, for the generated AsyncAPI document."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.POS_GIFTCARD_ACTIVITY, group_id=settings.consumer_group, title="on_giftcard_activity",
                       description="Gift cards activated, reloaded, redeemed and refunded at the POS "
                       "(key: card_number; the one topic that carries full card numbers)")
    async def on_giftcard_activity(event: GiftCardEvent) -> None: ...

    broker.publisher(topics.GIFTCARD_CARDS, schema=GiftCardChanged, title="to_giftcard_cards",
                     description="A card's whole current state after every change (key: card_id; no full number)")
    broker.publisher(topics.GIFTCARD_REJECTIONS, schema=GiftCardActivityRejected, title="to_giftcard_rejections",
                     description="POS gift card events the ledger refused, for the POS (key: card_id, or last4)")
    return AsyncAPI(broker, title="giftcard_ledger", version="1.0.0")
