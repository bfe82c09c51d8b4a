"""Marketing > Coupons over HTTP: create, update, deactivate, list; 4xx naming the field; scopes."""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import hash_key
from tests.integration.coupons.conftest import Ledger, LedgerFactory

READ_ONLY_KEY = "till-key-read-only"


@pytest.fixture
async def ledger(ledger_factory: LedgerFactory) -> Any:
    async with ledger_factory(api_keys=f"{hash_key(READ_ONLY_KEY)}=read") as running_ledger:
        yield running_ledger


async def field_error(ledger: Ledger, method: str, path: str, body: Any, expect: int = 422) -> str:
    response = await ledger.http.request(method, path, json=body, headers=ledger.auth)
    assert response.status_code == expect, response.text
    errors = response.json()["errors"]
    assert response.json()["detail"].startswith("invalid request")
    return ",".join(e["field"] for e in errors)


async def test_create_read_update_deactivate_list(ledger: Ledger) -> None:
    created = await ledger.coupon("fall10", name="Fall 10% off", campaign="fall-2026", valid_from="2026-09-01",
                                  valid_until="2026-11-30", max_redemptions=100, max_redemptions_per_customer=1)
    assert created == created | {
        "code": "FALL10", "name": "Fall 10% off", "discount_type": "percent", "discount_value": "10",
        "currency": None, "campaign": "fall-2026", "valid_from": "2026-09-01T00:00:00-04:00",
        "valid_until": "2026-12-01T00:00:00-05:00", "max_redemptions": 100, "max_redemptions_per_customer": 1,
        "active": True, "times_used": 0, "remaining": 100, "revision": 1,
    }
    clash = await ledger.http.post("/v1/coupons", headers=ledger.auth, json={
        "code": "Fall10", "name": "Again", "discount_type": "percent", "discount_value": "5"})
    assert clash.status_code == 409 and "FALL10" in clash.json()["detail"]

    patched = await ledger.call("PATCH", "/v1/coupons/FaLL10", json={"name": "Fall sale", "max_redemptions": None})
    assert (patched["name"], patched["max_redemptions"], patched["remaining"], patched["revision"]) == (
        "Fall sale", None, None, 2)
    replaced = await ledger.call("PUT", "/v1/coupons/fall10", json={
        "name": "Fall $5 off", "discount_type": "amount", "discount_value": "5.00", "currency": "USD"})
    assert (replaced["discount_type"], replaced["discount_value"], replaced["campaign"], replaced["revision"]) == (
        "amount", "5.00", None, 3)
    off = await ledger.call("POST", "/v1/coupons/FALL10/deactivate")
    assert (off["active"], off["revision"]) == (False, 4)
    assert (await ledger.call("POST", "/v1/coupons/FALL10/deactivate"))["revision"] == 4, "no change, no revision"
    still_off = await ledger.call("PUT", "/v1/coupons/FALL10", json={
        "name": "Fall $5 off", "discount_type": "amount", "discount_value": "5.00", "currency": "USD",
        "max_redemptions": 10})
    assert (still_off["active"], still_off["revision"]) == (False, 5), "a PUT without 'active' keeps it"
    revisions = await ledger.sql("SELECT revision, change, name FROM coupon_revisions ORDER BY revision")
    assert [(r["revision"], r["change"]) for r in revisions] == [(1, "create"), (2, "update"), (3, "update"),
                                                                  (4, "deactivate"), (5, "update")]
    answer = await ledger.call("POST", "/v1/coupons/validate",
                               json={"code": "fall10", "customer_id": "C-1", "subtotal": "10.00", "currency": "USD"})
    assert (answer["valid"], answer["reason"], answer["coupon_code"]) == (False, "inactive", "FALL10")
    assert (await ledger.call("POST", "/v1/coupons/FALL10/activate"))["active"] is True

    for i in range(5):
        await ledger.coupon(f"LIST{i}", campaign="winter" if i % 2 else None)
    await ledger.call("POST", "/v1/coupons/LIST3/deactivate")
    codes, cursor = [], None
    while True:
        page = await ledger.call("GET", "/v1/coupons", params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
        codes += [c["code"] for c in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert codes == ["FALL10", "LIST0", "LIST1", "LIST2", "LIST3", "LIST4"]
    winter = await ledger.call("GET", "/v1/coupons", params={"campaign": "winter", "active": "true"})
    assert [c["code"] for c in winter["items"]] == ["LIST1"]
    assert (await ledger.http.get("/v1/coupons/NOPE", headers=ledger.auth)).status_code == 404
    assert (await ledger.http.patch("/v1/coupons/NOPE", json={"name": "x"}, headers=ledger.auth)).status_code == 404


BAD_INPUT = [
    ({"discount_value": "150"}, "discount_value"),
    ({"discount_value": "0"}, "discount_value"),
    ({"discount_value": "10.005"}, "discount_value"),
    ({"discount_type": "amount", "discount_value": "5.00"}, "currency"),
    ({"currency": "USD"}, "currency"),
    ({"discount_type": "amount", "discount_value": "5.00", "currency": "dollars"}, "currency"),
    ({"discount_type": "bogus"}, "discount_type"),
    ({"code": "has space"}, "code"),
    ({"name": ""}, "name"),
    ({"valid_from": "2026-12-02", "valid_until": "2026-12-01"}, "valid_until"),
    ({"valid_from": "2026-12-01T10:00:00"}, "valid_from"),
    ({"valid_until": "next tuesday"}, "valid_until"),
    ({"max_redemptions": 0}, "max_redemptions"),
    ({"max_redemptions_per_customer": -1}, "max_redemptions_per_customer"),
    ({"campaign": "has space"}, "campaign"),
    ({"maximum": 5}, "maximum"),
]


async def test_bad_input_is_a_422_naming_the_field(ledger: Ledger) -> None:
    base = {"code": "BAD1", "name": "Bad", "discount_type": "percent", "discount_value": "10"}
    for body, field in BAD_INPUT:
        assert await field_error(ledger, "POST", "/v1/coupons", base | body) == field, body
    assert await ledger.sql("SELECT 1 FROM coupons") == [], "never a half-written record"


async def test_updates_are_checked_like_creations(ledger: Ledger) -> None:
    await ledger.coupon("EDIT", discount_type="amount", discount_value="5.00", currency="USD")
    assert await field_error(ledger, "PATCH", "/v1/coupons/EDIT", {"discount_value": "5.001"}) == "discount_value"
    assert await field_error(ledger, "PATCH", "/v1/coupons/EDIT", {"currency": None}) == "currency"
    assert await field_error(ledger, "PATCH", "/v1/coupons/EDIT", {"name": None}) == "name"
    assert await field_error(ledger, "PUT", "/v1/coupons/EDIT", {"code": "OTHER", "name": "x",
                                                                 "discount_type": "percent",
                                                                 "discount_value": "5"}) == "code"
    to_percent = await ledger.call("PATCH", "/v1/coupons/EDIT", json={"discount_type": "percent",
                                                                      "discount_value": "15"})
    assert (to_percent["currency"], to_percent["discount_value"]) == (None, "15")
    assert (await ledger.http.get("/v1/coupons/bad%20code", headers=ledger.auth)).status_code == 422
    assert await field_error(ledger, "POST", "/v1/coupons/validate",
                             {"code": "EDIT", "subtotal": "-1.00", "currency": "USD"}) == "subtotal"
    assert await field_error(ledger, "POST", "/v1/coupons/validate",
                             {"code": "EDIT", "subtotal": 10.5, "currency": "USD"}) == "subtotal"


async def test_scopes_read_for_reads_and_the_till_manage_for_the_catalog(ledger: Ledger) -> None:
    await ledger.coupon("SCOPED")
    till = {"Authorization": f"Bearer {READ_ONLY_KEY}"}
    assert (await ledger.http.get("/v1/coupons/SCOPED", headers=till)).status_code == 200
    validate = await ledger.http.post("/v1/coupons/validate", headers=till, json={
        "code": "SCOPED", "customer_id": None, "subtotal": "20.00", "currency": "EUR"})
    assert validate.status_code == 200 and validate.json()["discount_amount"] == "2.00"
    unknown = await ledger.http.post("/v1/coupons/validate", headers=till, json={
        "code": "nope nope", "subtotal": "20.00", "currency": "EUR"})
    assert (unknown.json()["valid"], unknown.json()["reason"]) == (False, "unknown")
    for method, path in [("POST", "/v1/coupons"), ("PATCH", "/v1/coupons/SCOPED"), ("PUT", "/v1/coupons/SCOPED"),
                         ("POST", "/v1/coupons/SCOPED/deactivate"), ("POST", "/v1/coupons/SCOPED/activate"),
                         ("POST", "/v1/coupon-insights/sweep")]:
        response = await ledger.http.request(method, path, headers=till, json={})
        assert response.status_code == 403, (method, path, response.status_code)
        assert (await ledger.http.request(method, path, json={})).status_code == 401
    for path in ["/v1/coupons", "/v1/coupons/SCOPED/stats", "/v1/reports/flagged-redemptions",
                 "/v1/reports/held-reversals", "/v1/customers/C-1/coupon-redemptions",
                 "/v1/customers/C-1/coupon-insights"]:
        assert (await ledger.http.get(path)).status_code == 401, path
        assert (await ledger.http.get(path, headers=till)).status_code == 200, path


async def test_nul_characters_are_a_422_not_a_500(ledger: Ledger) -> None:
    # Found by Schemathesis: NUL passes URL and JSON decoding, but Postgres text cannot hold it.
    query = await ledger.http.get("/v1/reports/flagged-redemptions", headers=ledger.auth,
                                  params={"coupon_code": "FALL\x0010"})
    assert query.status_code == 422, query.text
    assert "NUL" in query.json()["detail"]
    body = await ledger.http.post("/v1/coupons", headers=ledger.auth, json={
        "code": "NUL1", "name": "bad\x00name", "discount_type": "percent", "discount_value": "5"})
    assert body.status_code == 422, body.text
    assert (await ledger.http.get("/v1/coupons/NUL1", headers=ledger.auth)).status_code == 404, "nothing stored"
