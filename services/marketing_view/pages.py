"""The Marketing tab as a server-rendered page: the three grids of the original screen, plus insights.

No JavaScript, no external resources (works offline); every value is HTML-escaped.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from html import escape
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from services.marketing_view.domain import money_display

HERE = Path(__file__).parent
STATUS_LABELS = {"active": "Active", "expired": "Expired", "fully_redeemed": "Fully redeemed",
                 "deactivated": "Deactivated", "redeemed": "Redeemed", "reversed": "Reversed",
                 "automatic": "Automatic", "manual": "Manual"}


@cache
def _template(name: str) -> Template:
    return Template((HERE / "templates" / name).read_text(encoding="utf-8"))


@cache
def _css() -> str:
    return (HERE / "static" / "tab.css").read_text(encoding="utf-8")


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def badge(status: str) -> str:
    return f'<span class="badge badge-{e(status)}">{e(STATUS_LABELS.get(status, status))}</span>'


def date_display(iso: str | None) -> str:
    if not iso:
        return ""
    d = date.fromisoformat(iso)
    return f"{d:%b} {d.day}, {d.year}"


def moment_display(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment:%M} {half} {moment.tzname()}"


def _grid(grid_id: str, columns: list[tuple[str, str]], rows: list[str], empty: str) -> str:
    head = "".join(f'<th scope="col"{f" class={c!r}" if c else ""}>{e(name)}</th>' for name, c in columns)
    body = "\n".join(rows) if rows else (
        f'<tr class="empty-row"><td colspan="{len(columns)}">{e(empty)}</td></tr>')
    return (f'<table class="grid" id="{grid_id}">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>")


def segments_grid(segments: list[dict[str, Any]]) -> str:
    rows = [
        f'<tr class="row" data-segment-id="{e(s["segment_id"])}">'
        f'<td class="name">{e(s["name"])}</td>'
        f'<td class="date"><time datetime="{e(s["date_assigned"])}">{e(date_display(s["date_assigned"]))}</time></td>'
        f'<td class="assigned-by">{badge(s["assigned_by"])}</td>'
        f'<td class="notes">{e(s["notes"])}</td></tr>'
        for s in segments
    ]
    return _grid("segments-grid", [("Segment Name", ""), ("Date Assigned", ""), ("Assigned By", ""), ("Notes", "")],
                 rows, "This customer is not in any segment yet.")


def coupons_grid(items: list[dict[str, Any]], tz: ZoneInfo) -> str:
    rows = []
    for c in items:
        used = datetime.fromisoformat(c["used_at"]).astimezone(tz)
        flags = "".join(f'<span class="badge badge-flag">{e(f.replace("_", " "))}</span>' for f in c["flags"])
        status = badge("reversed") if c["status"] == "reversed" else ""
        if c["status"] == "reversed" and c.get("reversal_reason"):
            status = status.replace("<span ", f'<span title="{e(c["reversal_reason"])}" ', 1)
        rows.append(
            f'<tr class="row {e(c["status"])}" data-invoice="{e(c["invoice_number"])}" data-used-at="{e(c["used_at"])}"'
            f' data-status="{e(c["status"])}">'
            f'<td class="code mono">{e(c["coupon_code"])} {status}{flags}</td>'
            f'<td class="coupon-name">{e(c["coupon_name"])}</td>'
            f'<td class="discount num">{e(c["discount"]["display"])}</td>'
            f'<td class="used-at"><time datetime="{e(c["used_at"])}">{e(moment_display(used))}</time></td>'
            f'<td class="invoice"><a href="{e(c["invoice_url"])}" rel="noopener noreferrer">'
            f'{e(c["invoice_number"])}</a></td>'
            "</tr>"
        )
    return _grid("coupons-grid", [("Coupon Code", ""), ("Coupon Name", ""), ("Discount Amount", "num"),
                                  ("Date Used", ""), ("Invoice Number", "")], rows, "No coupons used yet.")


def gift_cards_grid(cards: list[dict[str, Any]]) -> str:
    rows = [
        f'<tr class="row" data-card-id="{e(g["card_id"])}" data-status="{e(g["status"])}">'
        f'<td class="card-number mono">{e(g["card_number_masked"])}</td>'
        f'<td class="original num">{e(money_display(g["original_balance"], g["currency"]))}</td>'
        f'<td class="current num">{e(money_display(g["current_balance"], g["currency"]))}</td>'
        f'<td class="status">{badge(g["status"])}</td>'
        f'<td class="issue-date"><time datetime="{e(g["issue_date"])}">{e(date_display(g["issue_date"]))}</time></td>'
        f'<td class="expiration-date">{e(date_display(g["expiration_date"]))}</td></tr>'
        for g in cards
    ]
    return _grid("gift-cards-grid", [("Card Number", ""), ("Original Balance", "num"), ("Current Balance", "num"),
                                     ("Status", ""), ("Issue Date", ""), ("Expiration Date", "")],
                 rows, "No gift cards linked to this customer.")


def _figure(fig_id: str, label: str, value: str, hint: str) -> str:
    return (f'<div class="figure" id="{fig_id}"><div class="label">{e(label)}</div>'
            f'<div class="value">{value}</div><div class="hint">{hint}</div></div>')


def insights_panel(insights: dict[str, Any]) -> str:
    balances = insights["gift_card_balances"]
    if balances:
        total = " + ".join(e(money_display(b["total_balance"], b["currency"])) for b in balances)
        expiring = " + ".join(e(money_display(b["expiring_balance"], b["currency"])) for b in balances)
        cards = sum(b["active_cards"] for b in balances)
        days = balances[0]["expiring_within_days"]
        card_hint = f"on {cards} active card{'s' if cards != 1 else ''}"
    else:
        total, expiring, days, card_hint = e(money_display("0.00", "USD")), e(money_display("0.00", "USD")), 30, \
            "no active gift card"
    parts = ["<h2>Insights</h2>",
             _figure("gift-card-balance", "Gift card balance", total, card_hint),
             _figure("expiring-balance", f"Expiring within {days} days", expiring, "on active cards")]
    sensitivity = insights["coupon_price_sensitivity"]
    if sensitivity is None:
        parts.append(_figure("coupon-share", "Purchases with a coupon", "—", "no purchases recorded yet"))
    else:
        share = Decimal(sensitivity["coupon_share"]) * 100
        hint = (f'{sensitivity["purchases_with_coupon"]} of {sensitivity["purchases"]} purchases in the last '
                f'{sensitivity["window_days"]} days')
        if sensitivity["coupon_only_buyer"]:
            hint += ' <span class="badge badge-expired" id="coupon-only">Coupon-only buyer</span>'
        parts.append(_figure("coupon-share", "Purchases with a coupon", f"{share:.0f}%", hint))
    return "\n".join(parts)


def pager(next_cursor: str | None, on_later_page: bool) -> str:
    links = []
    if on_later_page:
        links.append('<a id="newest" href="?">← Newest</a>')
    if next_cursor:
        links.append(f'<a id="older" href="?{e(urlencode({"cursor": next_cursor}))}">Older coupons →</a>')
    return f'<nav class="pager" aria-label="Coupon history pages">{"".join(links)}</nav>' if links else ""


def tab_page(tab: dict[str, Any], *, tz: ZoneInfo, on_later_page: bool) -> str:
    as_of = datetime.fromisoformat(tab["as_of"].replace("Z", "+00:00")).astimezone(tz)
    return _template("tab.html").substitute(
        css=_css(), customer_id=e(tab["customer_id"]), as_of=e(tab["as_of"]), as_of_display=e(moment_display(as_of)),
        insights=insights_panel(tab["insights"]), segments=segments_grid(tab["segments"]),
        coupons=coupons_grid(tab["coupon_usage"]["items"], tz),
        pager=pager(tab["coupon_usage"]["next_cursor"], on_later_page),
        gift_cards=gift_cards_grid(tab["gift_cards"]), timezone=e(tz.key),
    )


def message_page(title: str, message: str, *, login_action: str | None = None) -> str:
    extra = ""
    if login_action is not None:
        extra = (f'<form class="login" method="get" action="{e(login_action)}">'
                 '<input type="password" name="key" autocomplete="off" placeholder="API key" aria-label="API key"'
                 ' required>'
                 '<button type="submit">Open the tab</button></form>')
    return _template("message.html").substitute(css=_css(), title=e(title), message=e(message), extra=extra)

