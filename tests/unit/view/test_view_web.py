"""The HTTP edges: GET/HEAD only everywhere, signed browser sessions, the page's markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from services.marketing_view import pages
from services.marketing_view.keys import GENERATION, KeySpace, new_generation
from services.marketing_view.web import ReadOnly, Sessions
from shared.auth import Principal, Scope

NY = ZoneInfo("America/New_York")


def tiny_app() -> ReadOnly:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello world")

    return ReadOnly(app)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"])
@pytest.mark.parametrize("path", ["/hello", "/nowhere", "/metrics"])
async def test_anything_but_get_and_head_is_405_on_every_path(method: str, path: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tiny_app()), base_url="http://t") as client:
        response = await client.request(method, path, content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert "read-only" in response.json()["detail"]


async def test_head_answers_like_get_without_a_body() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tiny_app()), base_url="http://t") as client:
        get = await client.get("/hello")
        head = await client.head("/hello")
        missing = await client.head("/nowhere")
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(b"hello world"))
    assert missing.status_code == 404


def test_sessions_are_signed_and_expire() -> None:
    sessions = Sessions(b"secret", ttl_s=60)
    principal = Principal("abcd1234", frozenset({Scope.READ}))
    token = sessions.issue(principal, now=1000)
    assert sessions.verify(token, now=1030) == principal
    assert sessions.verify(token, now=1061) is None, "expired"
    expires, _scopes, key_id, mac = token.split(".")
    assert sessions.verify(f"{expires}.read+manage.{key_id}.{mac}", now=1030) is None, "scopes are signed"
    assert sessions.verify(token, now=1030) is not None
    assert Sessions(b"other", ttl_s=60).verify(token, now=1030) is None, "another secret"
    assert sessions.verify("garbage", now=1030) is None


def test_generation_names_and_key_layout() -> None:
    keys = KeySpace("mv")
    gen = new_generation()
    assert GENERATION.match(gen)
    assert keys.generation_of(keys.doc(gen, "C-1")) == gen
    assert keys.generation_of(keys.card_index(gen, "gc-1")) == gen
    assert keys.generation_of(keys.current) is None and keys.is_control(keys.current)
    assert keys.generation_of(keys.building) is None
    assert keys.generation_of("mv:{C-10042}:doc") is None, "the walking skeleton's layout is no generation"
    assert keys.generation_of("other:v1234:x") is None
    doc, history = keys.customer(gen, "C-1")
    assert "{C-1}" in doc and "{C-1}" in history, "one hash tag: one Redis Cluster slot per customer"


class Rows(HTMLParser):
    """Collects the text of each row of each grid."""

    def __init__(self) -> None:
        super().__init__()
        self.grids: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self._grid: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._grid = a.get("id")
            self.grids[self._grid or ""] = []
            self.headers[self._grid or ""] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._in_head:
                self.headers[self._grid or ""].append(text)
            elif self._row is not None:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.grids[self._grid or ""].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tab(**changes: object) -> dict:
    body = {
        "customer_id": "C-<1>", "as_of": "2026-12-03T15:04:05Z",
        "segments": [{"segment_id": "vip", "name": "VIP <b>", "date_assigned": "2026-11-28",
                      "assigned_by": "manual", "notes": "friend & <script>alert(1)</script>"}],
        "coupon_usage": {"items": [{
            "coupon_code": "FALL10", "coupon_name": "Fall \"10%\" off",
            "discount": {"type": "percent", "value": "10", "amount": "10.20", "currency": "USD",
                         "display": "10% ($10.20)"},
            "used_at": "2026-11-28T14:03:12-05:00", "invoice_number": "INV-1",
            "invoice_url": "https://pos.example/invoices/INV-1?a=1&b=2", "status": "reversed",
            "reversed_at": "2026-11-29T10:00:00-05:00", "flags": []}], "next_cursor": "abc"},
        "gift_cards": [{"card_id": "gc-1", "card_number_masked": "•••• •••• •••• 4821", "last4": "4821",
                        "original_balance": "50.00", "current_balance": "20.00", "currency": "USD",
                        "status": "fully_redeemed", "issue_date": "2026-01-02", "expiration_date": None}],
        "insights": {"gift_card_balances": [], "coupon_price_sensitivity": None},
    }
    body.update(changes)
    return body


def test_page_has_the_original_columns_and_escapes_everything() -> None:
    html = pages.tab_page(tab(), tz=NY, on_later_page=False)
    parsed = Rows()
    parsed.feed(html)
    assert parsed.headers["segments-grid"] == ["Segment Name", "Date Assigned", "Assigned By", "Notes"]
    assert parsed.headers["coupons-grid"] == ["Coupon Code", "Coupon Name", "Discount Amount", "Date Used",
                                              "Invoice Number"]
    assert parsed.headers["gift-cards-grid"] == ["Card Number", "Original Balance", "Current Balance", "Status",
                                                 "Issue Date", "Expiration Date"]
    assert parsed.grids["segments-grid"] == [["VIP <b>", "Nov 28, 2026", "Manual",
                                              "friend & <script>alert(1)</script>"]]
    assert parsed.grids["coupons-grid"] == [["FALL10 Reversed", 'Fall "10%" off', "10% ($10.20)",
                                             "Nov 28, 2026, 2:03 PM EST", "INV-1"]]
    assert parsed.grids["gift-cards-grid"] == [["•••• •••• •••• 4821", "$50.00", "$20.00", "Fully redeemed",
                                                "Jan 2, 2026", ""]]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="https://pos.example/invoices/INV-1?a=1&amp;b=2"' in html
    assert 'id="older" href="?cursor=abc"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//(?!pos\.example)", html), "no external resources"


def test_page_empty_states() -> None:
    empty = tab(segments=[], coupon_usage={"items": [], "next_cursor": None}, gift_cards=[])
    parsed = Rows()
    parsed.feed(pages.tab_page(empty, tz=NY, on_later_page=False))
    assert parsed.grids["segments-grid"] == [["This customer is not in any segment yet."]]
    assert parsed.grids["coupons-grid"] == [["No coupons used yet."]]
    assert parsed.grids["gift-cards-grid"] == [["No gift cards linked to this customer."]]


def test_login_page_uses_a_get_form() -> None:
    html = pages.message_page("Sign in", "Sign in with your API key", login_action="/customers/C-1/marketing")
    assert 'method="get"' in html and 'name="key"' in html and 'type="password"' in html
