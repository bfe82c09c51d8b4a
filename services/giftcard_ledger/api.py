"""HTTP routes of the gift card management API (SPEC §7.1). They translate; the use cases decide."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.giftcard_ledger.cardnumbers import CARD_ID_PATTERN
from services.giftcard_ledger.handlers import GiftCardLedger, IdempotentRequest, Outcome
from services.giftcard_ledger.schemas import (
    AdjustRequest,
    AssignRequest,
    CardOut,
    CustomerCardsOut,
    ErrorOut,
    ExpiringOut,
    IssuedCardOut,
    IssueRequest,
    LifecycleRequest,
    LookupRequest,
    RedeemRequest,
    ReloadRequest,
    SweepOut,
    SweepRequest,
    TransactionsOut,
)
from shared.auth import Principal, Scope, require
from shared.ratelimit import limited

MAX_PAGE = 200
DEFAULT_PAGE = 50

CardId = Annotated[str, Path(pattern=CARD_ID_PATTERN, description="The card's id (gc_...), never its number")]
CustomerId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
                                 description="Customer id (the contracts' identifier rules)")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", description="Unique per intended change; a retry sends the same key and body",
)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (at most {MAX_PAGE})")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Missing or malformed Idempotency-Key"},
    404: {"model": ErrorOut, "description": "No such card"},
    409: {"model": ErrorOut, "description": "Refused by the card's rules (reason code in `reason`)"},
    422: {"model": ErrorOut, "description": "Invalid request, or Idempotency-Key reused with another request"},
}

router = APIRouter(prefix="/v1", tags=["gift cards"])


def ledger_of(request: Request) -> GiftCardLedger:
    return request.app.state.ledger  # type: ignore[no-any-return]


def _idempotent(request: Request, key: str | None, principal: Principal, body: BaseModel | None) -> IdempotentRequest:
    if key is None or not key.strip():
        raise HTTPException(400, detail="the Idempotency-Key header is required on every write")
    if len(key) > 255 or not key.isascii() or not key.isprintable():
        raise HTTPException(400, detail="Idempotency-Key must be 1 to 255 printable ASCII characters")
    payload = body.model_dump(mode="json") if body is not None else {}
    canonical = orjson.dumps([request.method, request.url.path, payload], option=orjson.OPT_SORT_KEYS)
    return IdempotentRequest(key=key, method=request.method, path=request.url.path, canonical=canonical,
                             actor=f"api:{principal.key_id}")


def _answer(outcome: Outcome) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[str]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged") from None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged")
    return parts


# Reads are rate-limited per API key (429 past it): card and customer ids cannot be enumerated quickly.
Read = Depends(limited(Scope.READ))
Manage = Depends(require(Scope.MANAGE))

# --- writes --------------------------------------------------------------------------------------------------


@router.post("/gift-cards", status_code=201, response_model=IssuedCardOut, responses=_ERRORS,
             summary="Issue a card (the full number is in this response only)")
async def issue_card(request: Request, body: IssueRequest, idempotency_key: IdempotencyKey = None,
                     principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).issue(
        req, customer_id=body.customer_id, amount=body.amount, currency=body.currency, expires_on=body.expires_on,
        card_number=body.card_number,
    ))


@router.post("/gift-cards/lookup", response_model=CardOut, responses=_ERRORS,
             summary="Find a card by its number (in the body, never in the URL); answers the masked card")
async def lookup_card(request: Request, body: LookupRequest, _: Principal = Read) -> CardOut:
    card = await ledger_of(request).lookup(body.card_number)
    if card is None:
        raise HTTPException(404, detail="no gift card with this number")
    return card


@router.post("/gift-cards/sweep", response_model=SweepOut, summary="Expire the cards whose date has passed")
async def sweep(request: Request, body: Annotated[SweepRequest | None, Body()] = None,
                _: Principal = Manage) -> SweepOut:
    """Naturally idempotent: an Idempotency-Key is accepted and not needed. ``as_of`` cannot be in the future."""
    ledger = ledger_of(request)
    now = ledger.clock.now()
    as_of = body.as_of if body and body.as_of else now
    if as_of > now:
        raise HTTPException(422, detail="as_of must not be in the future: cards cannot expire early")
    if as_of.year < 2000:
        raise HTTPException(422, detail="as_of must be in the year 2000 or later")
    return SweepOut(as_of=as_of, expired=await ledger.sweep(as_of))


@router.post("/gift-cards/{card_id}/reload", response_model=CardOut, responses=_ERRORS, summary="Add money")
async def reload_card(request: Request, card_id: CardId, body: ReloadRequest,
                      idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).reload(req, card_id, amount=body.amount, currency=body.currency,
                                                   reason=body.reason))


@router.post("/gift-cards/{card_id}/redeem", response_model=CardOut, responses=_ERRORS,
             summary="Spend money from the card")
async def redeem_card(request: Request, card_id: CardId, body: RedeemRequest,
                      idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).redeem(
        req, card_id, amount=body.amount, currency=body.currency, invoice_number=body.invoice_number,
        store_id=body.store_id, reason=body.reason,
    ))


@router.post("/gift-cards/{card_id}/adjust", response_model=CardOut, responses=_ERRORS,
             summary="Correct the balance up or down, with a reason code")
async def adjust_card(request: Request, card_id: CardId, body: AdjustRequest,
                      idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).adjust(req, card_id, amount=body.amount, reason=body.reason,
                                                   note=body.note))


@router.post("/gift-cards/{card_id}/expire", response_model=CardOut, responses=_ERRORS,
             summary="Expire the card now (its balance stays, for the books)")
async def expire_card(request: Request, card_id: CardId,
                      body: Annotated[LifecycleRequest | None, Body()] = None,
                      idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).expire(req, card_id, reason=body.reason if body else None))


@router.post("/gift-cards/{card_id}/deactivate", response_model=CardOut, responses=_ERRORS,
             summary="Disable the card permanently")
async def deactivate_card(request: Request, card_id: CardId,
                          body: Annotated[LifecycleRequest | None, Body()] = None,
                          idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).deactivate(req, card_id, reason=body.reason if body else None))


@router.post("/gift-cards/{card_id}/assign", response_model=CardOut, responses=_ERRORS,
             summary="Re-assign the card to another customer")
async def assign_card(request: Request, card_id: CardId, body: AssignRequest,
                      idempotency_key: IdempotencyKey = None, principal: Principal = Manage) -> JSONResponse:
    req = _idempotent(request, idempotency_key, principal, body)
    return _answer(await ledger_of(request).assign(req, card_id, customer_id=body.customer_id,
                                                   reason=body.reason))


# --- reads ---------------------------------------------------------------------------------------------------


@router.get("/gift-cards/expiring", response_model=ExpiringOut,
            summary="Open cards with a balance that expire within N days (for reminders)")
async def expiring_cards(request: Request, within_days: Annotated[int, Query(ge=0, le=3660)] = 30,
                         limit: Limit = DEFAULT_PAGE, cursor: Cursor = None, _: Principal = Read) -> ExpiringOut:
    after = None
    if cursor:
        parts = _decode_cursor(cursor)
        try:
            after = (date.fromisoformat(parts[0]), parts[1])
        except (IndexError, ValueError):
            raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged") \
                from None
    first, last, items, last_card = await ledger_of(request).expiring(within_days, after=after, limit=limit)
    next_cursor = None
    if last_card is not None and last_card.expires_on is not None:
        next_cursor = _encode_cursor(last_card.expires_on.isoformat(), last_card.card_id)
    return ExpiringOut(within_days=within_days, from_date=first, to_date=last, items=items, next_cursor=next_cursor)


@router.get("/gift-cards/{card_id}", response_model=CardOut, responses=_ERRORS, summary="One card")
async def get_card(request: Request, card_id: CardId, _: Principal = Read) -> CardOut:
    card = await ledger_of(request).card(card_id)
    if card is None:
        raise HTTPException(404, detail=f"no gift card {card_id}")
    return card


@router.get("/gift-cards/{card_id}/transactions", response_model=TransactionsOut, responses=_ERRORS,
            summary="The card's ledger, newest first, with the balance after each entry")
async def card_transactions(request: Request, card_id: CardId, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None,
                            _: Principal = Read) -> TransactionsOut:
    before = None
    if cursor:
        parts = _decode_cursor(cursor)
        if len(parts) != 1 or not parts[0].isdigit() or len(parts[0]) > 18:
            raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged")
        before = int(parts[0])
    page = await ledger_of(request).transactions(card_id, before_seq=before, limit=limit)
    if page is None:
        raise HTTPException(404, detail=f"no gift card {card_id}")
    items, next_seq = page
    return TransactionsOut(card_id=card_id, items=items,
                           next_cursor=_encode_cursor(str(next_seq)) if next_seq is not None else None)


@router.get("/customers/{customer_id}/gift-cards", response_model=CustomerCardsOut,
            summary="A customer's cards, newest first")
async def customer_cards(request: Request, customer_id: CustomerId, limit: Limit = DEFAULT_PAGE,
                         cursor: Cursor = None, _: Principal = Read) -> CustomerCardsOut:
    after = None
    if cursor:
        parts = _decode_cursor(cursor)
        try:
            after = (datetime.fromisoformat(parts[0]), parts[1])
        except (IndexError, ValueError):
            raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged") \
                from None
        if after[0].tzinfo is None:
            raise HTTPException(422, detail="invalid cursor: pass next_cursor from the previous page unchanged")
    items, last_card = await ledger_of(request).customer_cards(customer_id, after=after, limit=limit)
    next_cursor = _encode_cursor(last_card.issued_at.isoformat(), last_card.card_id) if last_card else None
    return CustomerCardsOut(customer_id=customer_id, items=items, next_cursor=next_cursor)
