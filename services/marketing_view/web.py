"""HTTP edges of the read model: GET/HEAD only on every path, and the browser's way to authenticate.

Browser authentication (the tab page only; the JSON API takes ``Authorization: Bearer`` alone):
- ``Authorization: Bearer <key>`` works on the page too;
- ``/customers/<id>/marketing?key=<api key>`` once: the key is checked, a signed session cookie
  (HttpOnly, SameSite=Lax, 8 h) is set and the browser is redirected to the clean URL, so the key does not
  stay in the address bar;
- without either, the page answers 401 with a small form (method GET: POST is refused everywhere here)
  asking for the key.
The cookie holds no key: ``<expiry>.<scopes>.<key id>.<HMAC-SHA256 of those with the session secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import HTTPException, Request, status

from shared.auth import KeyStore, Principal, Scope, principal_of
from shared.ratelimit import charge

Scope_ = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope_, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

ALLOWED = ("GET", "HEAD")
SESSION_COOKIE = "mv_session"


class ReadOnly:
    """ASGI middleware: anything but GET and HEAD is 405 on every path (known, unknown, /metrics...);
    HEAD is answered as GET without the body, wherever GET works."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope_, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"].upper()
        if method == "GET":
            await self.app(scope, receive, send)
            return
        if method == "HEAD":
            async def send_headers_only(message: Message) -> None:
                if message["type"] == "http.response.body":
                    if not message.get("more_body", False):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send(message)

            await self.app({**scope, "method": "GET"}, receive, send_headers_only)
            return
        body = orjson.dumps({"detail": f"{method} is not allowed: this service is read-only (GET and HEAD only)"})
        await send({"type": "http.response.start", "status": 405, "headers": [
            (b"allow", b"GET, HEAD"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})


QUERY_LIMIT = re.compile(r"^[0-9]{1,6}$")
Answer = Callable[[Any, str, "str | None", "int | None", "str | None"], Awaitable[Any]]


class FastRead:
    """The ASGI app of the JSON read route for the common case, without FastAPI's per-request dependency and
    parameter solving (a third of a read's CPU): a valid Bearer key with the read scope, and at most a plain
    ``cursor`` and a positive ``limit``. It authenticates, authorises and takes a rate-limit token exactly
    like ``Depends(limited(Scope.READ))`` and answers with the route's own code (``answer``). Anything else
    (no or unknown key, missing scope, an odd query) goes to ``slow``, the FastAPI route itself, so every
    refusal (401, 403, 422) is the route's own. The key store, rate limiter and reader are looked up on the
    app at each request, as the dependencies do."""

    def __init__(self, slow: ASGIApp, answer: Answer) -> None:
        self.slow = slow
        self.answer = answer

    async def __call__(self, scope: Scope_, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
        state = scope["app"].state
        principal = _bearer_principal(state.keys, authorization)
        query = _plain_query(scope["query_string"])
        if principal is None or Scope.READ not in principal.scopes or query is None:
            await self.slow(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        charge(state.rate_limiter, principal)
        cursor, limit = query
        response = await self.answer(state, scope["path_params"]["customer_id"], cursor, limit, if_none_match)
        await response(scope, receive, send)


def _bearer_principal(store: KeyStore, header: str | None) -> Principal | None:
    """``shared.auth.principal_of`` without its refusals (those are left to the FastAPI route)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return store.authenticate(token)


def _plain_query(raw: bytes) -> tuple[str | None, int | None] | None:
    """(cursor, limit) when the query is one FastAPI would accept as is; None for anything else."""
    if not raw:
        return None, None
    params = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))  # the last value wins, as in FastAPI
    limit = params.get("limit")
    if limit is not None and not (QUERY_LIMIT.match(limit) and int(limit) >= 1):
        return None
    return params.get("cursor"), int(limit) if limit is not None else None


class Sessions:
    """Signed, expiring browser sessions for the tab page."""

    def __init__(self, secret: bytes | None, ttl_s: int) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, principal: Principal, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.ttl_s)
        scopes = "+".join(sorted(principal.scopes))
        payload = f"{expires}.{scopes}.{principal.key_id}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, now: float | None = None) -> Principal | None:
        try:
            expires, scopes, key_id, mac = token.split(".")
            payload = f"{expires}.{scopes}.{key_id}"
            if not hmac.compare_digest(mac, self._mac(payload)) or int(expires) < (now or time.time()):
                return None
            return Principal(key_id, frozenset(Scope(s) for s in scopes.split("+") if s))
        except ValueError:
            return None


class LoginRequired(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def page_principal(request: Request, sessions: Sessions) -> Principal:
    """Bearer header, else the session cookie; 401 (LoginRequired) without either, 403 without the read scope."""
    principal: Principal | None
    if request.headers.get("authorization"):
        try:
            principal = principal_of(request)
        except HTTPException as exc:
            raise LoginRequired(str(exc.detail)) from None
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        principal = sessions.verify(cookie) if cookie else None
        if principal is None:
            raise LoginRequired("your session expired, sign in again" if cookie else "sign in with your API key")
    if Scope.READ not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this API key lacks the 'read' scope")
    return principal


def key_principal(request: Request, key: str) -> Principal | None:
    return request.app.state.keys.authenticate(key)
