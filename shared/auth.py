"""API keys with scopes. Keys are configured as SHA-256 hashes and compared in constant time.

A key is a random string handed to a client; the deployment only knows ``sha256:<hex>=scope,scope``.
The local stack's dev key (``MARKETING_API_KEY``) is hashed at start-up and has every scope.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, Request, status

from shared.settings import CommonSettings


class Scope(StrEnum):
    READ = "read"
    MANAGE = "manage"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True)
class Principal:
    key_id: str  # first 8 hex digits of the key's hash: enough to tell keys apart in logs
    scopes: frozenset[Scope]


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _parse_entry(entry: str) -> tuple[bytes, frozenset[Scope]]:
    digest, _, scopes = entry.strip().partition("=")
    if not digest.startswith("sha256:") or len(digest) != 7 + 64:
        raise ValueError("API key entries look like 'sha256:<64 hex digits>=read,manage'")
    parsed = frozenset(Scope(s.strip()) for s in scopes.split(",") if s.strip())
    return bytes.fromhex(digest[7:]), parsed


class KeyStore:
    def __init__(self, entries: list[tuple[bytes, frozenset[Scope]]]) -> None:
        self._entries = entries

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> KeyStore:
        lines = [e for e in settings.api_keys.split(";") if e.strip()]
        if settings.api_keys_file:
            text = settings.api_keys_file.read_text()
            lines += [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        entries = [_parse_entry(e) for e in lines]
        if settings.marketing_api_key is not None:
            dev = settings.marketing_api_key.get_secret_value()
            entries.append((hashlib.sha256(dev.encode()).digest(), ALL_SCOPES))
        return cls(entries)

    def authenticate(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: frozenset[Scope] | None = None
        for stored, scopes in self._entries:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(stored, digest):
                found = scopes
        return None if found is None else Principal(digest.hex()[:8], found)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def principal_of(request: Request) -> Principal:
    store: KeyStore = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthorized("missing Authorization header: use 'Authorization: Bearer <api key>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Authorization must be 'Bearer <api key>'")
    principal = store.authenticate(token.strip())
    if principal is None:
        raise _unauthorized("unknown API key")
    request.state.principal = principal
    return principal


def authorise(request: Request, scope: Scope) -> Principal:
    """The principal of a valid key carrying ``scope``; 401 without a valid key, 403 without the scope."""
    principal = principal_of(request)
    if scope not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this API key lacks the '{scope}' scope")
    return principal


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that lets the request through only with a valid key carrying ``scope``.

    A coroutine on purpose: FastAPI runs a plain function dependency in a worker thread, which costs more
    than the check itself."""

    async def dependency(request: Request) -> Principal:
        return authorise(request, scope)

    return dependency
