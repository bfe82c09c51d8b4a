"""Ids in paths are validated; nothing that looks like a card number is taken as an id; pages are capped.

The rule for card numbers (shared/http.py): a path with a run of 12 or more digits is refused with 422 on every
service, before routing and authentication. Generated card numbers have 16 digits; POS-supplied ones have 8 to 20
characters. Customer ids ("C-10042"), coupon codes, segment ids, invoice numbers and job ids are far shorter, so
nothing legitimate is refused; a POS whose customer ids are 12+ digits would need a prefix (documented in
docs/security.md). Card look-ups by number go through POST /v1/gift-cards/lookup, the number in the body.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from services.marketing_view import domain as view_domain
from tests.security.apps import ALL_KEY, ALL_OPERATIONS, SERVICES, Operation, build

WITH_IDS = [op for op in ALL_OPERATIONS if "{" in op.template]
CARD_LIKE = ["6034931200457781", "603493120045", "60349312004577810001", "C-6034931200457781",
             "6034931200457781-x"]
BAD_IDS = ["a b", "x" * 300, "C-1;DROP", "<script>", "C-1%00", "-leading-dash", "%2e%2e%2f"]
AUTH = {"Authorization": f"Bearer {ALL_KEY}"}


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = {}
    for service in SERVICES:
        app = build(service)
        app.state.ledger = object()
        opened[service] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                            base_url="http://service")
    yield opened
    for client in opened.values():
        await client.aclose()


def _with(op: Operation, name: str, value: str) -> str:
    template = op.template.replace("{" + name + "}", quote(value, safe=""))
    return Operation(op.service, op.method, template).path


@pytest.mark.parametrize("op", WITH_IDS, ids=str)
async def test_no_card_number_is_taken_for_an_id(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    for name in re.findall(r"\{(\w+)\}", op.template):
        for number in CARD_LIKE:
            for headers in (AUTH, {}):
                response = await clients[op.service].request(op.method, _with(op, name, number), headers=headers,
                                                              json={})
                expected = 405 if op.service == "marketing_view" and op.method != "GET" else 422
                assert response.status_code == expected, (name, number, response.text)
                assert number not in response.text


@pytest.mark.parametrize("op", [op for op in WITH_IDS if op.method == "GET"], ids=str)
async def test_malformed_ids_are_refused(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    for name in re.findall(r"\{(\w+)\}", op.template):
        for bad in BAD_IDS:
            response = await clients[op.service].get(_with(op, name, bad), headers=AUTH)
            assert response.status_code in (400, 404, 405, 422), (name, bad, response.status_code, response.text)


def test_legitimate_ids_are_not_mistaken_for_card_numbers() -> None:
    from shared.http import CARD_LIKE_IN_PATH

    for path in ("/v1/customers/C-10042/marketing", "/v1/customers/10042/gift-cards", "/v1/coupons/FALL2026",
                 "/v1/segments/jobs/123456", "/v1/customers/CUST-00000012345/segments"):
        assert not CARD_LIKE_IN_PATH.search(path), path


@pytest.mark.parametrize("op", [op for op in ALL_OPERATIONS if op.method == "GET"], ids=str)
async def test_listing_endpoints_cap_their_page_size(op: Operation, clients: dict[str, httpx.AsyncClient]) -> None:
    doc = clients[op.service]._transport.app.openapi()  # type: ignore[attr-defined]
    params = {p["name"]: p for p in doc["paths"][op.template]["get"].get("parameters", [])}
    if "limit" not in params:
        return
    maximum = params["limit"]["schema"].get("maximum")
    if maximum is None:
        # Clamped by the service instead of refused: marketing_view (at 100) and redemption_ledger (page_size_max,
        # itself at most 1000); both checked below.
        assert (op.service, op.template) in CLAMPED, op
        return
    assert maximum <= 1000
    response = await clients[op.service].get(op.path, params={"limit": int(maximum) + 1}, headers=AUTH)
    assert response.status_code == 422, response.text


CLAMPED = {
    ("marketing_view", "/v1/customers/{customer_id}/marketing"),
    ("redemption_ledger", "/v1/coupons"),
    ("redemption_ledger", "/v1/customers/{customer_id}/coupon-redemptions"),
    ("redemption_ledger", "/v1/reports/flagged-redemptions"),
    ("redemption_ledger", "/v1/reports/held-reversals"),
}


def test_clamped_page_sizes() -> None:
    from services.redemption_ledger.config import Settings

    assert view_domain.page_size(10**9) == 100
    assert Settings.model_fields["page_size_max"].metadata  # bounded: le=1000 in the settings
    with pytest.raises(ValueError):
        Settings(page_size_max=10**6)
