"""Every operation of every service: no credentials 401, an unknown key 401, a key without the needed scope 403.

The services are built in-process from their settings with hashed test keys (MARKETING_API_KEYS), without their
lifespan: authentication and authorisation are dependencies that answer before any handler or database is
reached. The list of operations comes from each service's OpenAPI document, so a new route is covered (and must
declare its scope below if it is a read done with POST).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.auth import Scope
from tests.security.apps import (
    ALL_OPERATIONS,
    MANAGE_KEY,
    OPS_PATHS,
    READ_KEY,
    SERVICES,
    Operation,
    build,
)

# Reads with a body (a card number never goes in a URL; a validation asks a question) need only `read`.
READ_POSTS = {("giftcard_ledger", "/v1/gift-cards/lookup"), ("redemption_ledger", "/v1/coupons/validate")}
PROTECTED = [op for op in ALL_OPERATIONS if op.template not in OPS_PATHS]
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def required_scope(op: Operation) -> Scope:
    if op.method in ("GET", "HEAD") or (op.service, op.template) in READ_POSTS:
        return Scope.READ
    return Scope.MANAGE


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened: dict[str, httpx.AsyncClient] = {}
    for service in SERVICES:
        app = build(service)
        app.state.ledger = object()  # redemption_ledger resolves its ledger before the auth dependency
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        opened[service] = httpx.AsyncClient(transport=transport, base_url="http://service")
    yield opened
    for client in opened.values():
        await client.aclose()


def test_every_service_has_protected_operations() -> None:
    for service in SERVICES:
        assert [op for op in PROTECTED if op.service == service], service
    assert len(PROTECTED) >= 45, "the OpenAPI documents list every route"


@pytest.mark.parametrize("op", PROTECTED, ids=str)
async def test_no_or_unknown_credentials_are_401(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    client = clients[op.service]
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Basic {READ_KEY}"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Bearer {READ_KEY}x"}):
        response = await client.request(op.method, op.path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("op", PROTECTED, ids=str)
async def test_a_key_without_the_scope_is_403(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    wrong = MANAGE_KEY if required_scope(op) is Scope.READ else READ_KEY
    response = await clients[op.service].request(op.method, op.path, json={},
                                                 headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 403, response.text


@pytest.mark.parametrize("op", PROTECTED, ids=str)
async def test_a_key_with_the_scope_gets_past_auth(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    right = READ_KEY if required_scope(op) is Scope.READ else MANAGE_KEY
    response = await clients[op.service].request(op.method, op.path, json={},
                                                 headers={"Authorization": f"Bearer {right}"})
    assert response.status_code not in (401, 403), response.text  # (no database here: what follows may fail)


async def test_the_html_page_takes_a_key_once_and_checks_its_scope(clients: dict[str, httpx.AsyncClient]) -> None:
    client = clients["marketing_view"]
    assert (await client.get("/customers/C-10042/marketing?key=not-a-key")).status_code == 401
    assert (await client.get(f"/customers/C-10042/marketing?key={MANAGE_KEY}")).status_code == 403
    signed_in = await client.get(f"/customers/C-10042/marketing?key={READ_KEY}")
    assert signed_in.status_code == 303 and "httponly" in signed_in.headers["set-cookie"].lower()
    assert READ_KEY not in signed_in.headers["location"] + signed_in.headers["set-cookie"]
    client.cookies.clear()
    forged = await client.get("/customers/C-10042/marketing", headers={"Cookie": "mv_session=forged"})
    assert forged.status_code == 401


@pytest.mark.parametrize("path", ["/v1/customers/C-10042/marketing", "/customers/C-10042/marketing", "/healthz",
                                  "/readyz", "/metrics", "/openapi.json", "/docs", "/nowhere", "/v1/customers"])
async def test_marketing_view_answers_405_to_any_write(path: str, clients: dict[str, httpx.AsyncClient]) -> None:
    for method in WRITE_METHODS:
        for headers in ({}, {"Authorization": f"Bearer {READ_KEY}"}, {"Authorization": f"Bearer {MANAGE_KEY}"}):
            response = await clients["marketing_view"].request(method, path, headers=headers, content=b"{}")
            assert response.status_code == 405, (method, headers, response.text)
            assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize("service", SERVICES)
async def test_health_endpoints_reveal_nothing_about_customers(service: str,
                                                               clients: dict[str, httpx.AsyncClient]) -> None:
    client = clients[service]
    customer, card = "C-SECRET-77", "gc_" + "Z9y8X7w6V5u4T3s2R1q0Pp"
    for path in (f"/v1/customers/{customer}/marketing", f"/v1/customers/{customer}/gift-cards",
                 f"/v1/gift-cards/{card}", f"/v1/customers/{customer}/segments",
                 f"/v1/customers/{customer}/coupon-redemptions"):
        await client.get(path, headers={"Authorization": f"Bearer {READ_KEY}"})
        await client.get(path)
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert set(ready.json()) == {"status", "checks"}
    exported = (await client.get("/metrics")).text
    for secret in (customer, card, READ_KEY, MANAGE_KEY):
        assert secret not in health.text + ready.text + exported
