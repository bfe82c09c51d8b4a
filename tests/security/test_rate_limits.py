"""A per-key rate limit on the read API, the HTML page and the gift card look-ups: 429 past it, per key.

In-process with a tiny budget (burst 3, then one request every ~17 minutes) so that no timing is involved:
the 4th request of a key is refused whatever the machine's speed.
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.apps import ALL_KEY, MANAGE_KEY, READ_KEY, build

BURST = 3
LIMITED = {
    "giftcard_ledger": [("GET", "/v1/gift-cards/gc_A1b2C3d4E5f6G7h8I9j0Kl"),
                        ("GET", "/v1/gift-cards/gc_A1b2C3d4E5f6G7h8I9j0Kl/transactions"),
                        ("GET", "/v1/customers/C-10042/gift-cards"),
                        ("POST", "/v1/gift-cards/lookup"),
                        ("GET", "/v1/gift-cards/expiring")],
    "marketing_view": [("GET", "/v1/customers/C-10042/marketing"), ("GET", "/customers/C-10042/marketing")],
}


def _client(service: str) -> httpx.AsyncClient:
    app = build(service, rate_limit_per_s=0.001, rate_limit_burst=BURST)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://service")


CASES = [pytest.param(s, m, p, id=f"{s} {m} {p}") for s, ops in LIMITED.items() for m, p in ops]


@pytest.mark.parametrize(("service", "method", "path"), CASES)
async def test_past_the_burst_a_key_gets_429(service: str, method: str, path: str) -> None:
    async with _client(service) as client:
        auth = {"Authorization": f"Bearer {READ_KEY}"}
        for _ in range(BURST):
            response = await client.request(method, path, headers=auth, json={"card_number": "60349312"})
            assert response.status_code != 429
        refused = await client.request(method, path, headers=auth, json={"card_number": "60349312"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        other = await client.request(method, path, headers={"Authorization": f"Bearer {ALL_KEY}"},
                                     json={"card_number": "60349312"})
        assert other.status_code != 429, "the budget is per key"
        assert (await client.get("/healthz")).status_code == 200, "health checks are not limited"


async def test_the_budget_is_shared_by_every_limited_endpoint_of_a_key() -> None:
    async with _client("giftcard_ledger") as client:
        auth = {"Authorization": f"Bearer {READ_KEY}"}
        statuses = [(await client.request(m, p, headers=auth, json={"card_number": "60349312"})).status_code
                    for m, p in LIMITED["giftcard_ledger"]]
        assert statuses.count(429) == len(statuses) - BURST


async def test_unauthenticated_requests_are_401_not_429() -> None:
    async with _client("marketing_view") as client:
        for _ in range(BURST + 2):
            assert (await client.get("/v1/customers/C-1/marketing")).status_code == 401
        wrong_scope = await client.get("/v1/customers/C-1/marketing", headers={"Authorization": f"Bearer {MANAGE_KEY}"})
        assert wrong_scope.status_code == 403
