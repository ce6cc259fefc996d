"""The stand-in's hosted pages: Checkout (Pay / Pay (async) / Cancel), the billing portal (update
card), and an invoice, its PDF and a receipt. Small HTML a person or a browser test can use."""

from __future__ import annotations

from html import escape
from typing import Any


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto}"
            "button{font-size:1rem;margin:.25rem;padding:.5rem 1rem}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}<p><small>Stripe stand-in: test mode, no real money.</small></p>"
            "</body></html>")


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "-"
    return f"{amount // 100}.{amount % 100:02d} {(currency or '').upper()}"


def checkout(cs: dict[str, Any], items: list[dict[str, Any]]) -> str:
    rows = "".join(f"<li>{escape(str(i['description']))} × {i['quantity']}: {money(i['amount_total'], i['currency'])}"
                   "</li>" for i in items)
    total = f"<p>Total: <strong id=total>{money(cs['amount_total'], cs['currency'])}</strong></p>" if items else ""
    if cs["status"] != "open":
        return _page("Checkout", f"<p id=status>This session is {escape(cs['status'])}.</p>")
    buttons = ("<button name=action value=pay id=pay>Pay</button>"
               + ("<button name=action value=pay_async id=pay-async>Pay (async)</button>" if cs["mode"] == "payment"
                  else "")
               + "<button name=action value=cancel id=cancel>Cancel</button>")
    card = ("<label>Card <select name=payment_method id=card><option value=pm_card_visa>Visa 4242 (succeeds)</option>"
            "<option value=pm_card_chargeDeclined>Visa 0002 (declined)</option></select></label>")
    return _page(f"Checkout ({cs['mode']})", f"<ul>{rows}</ul>{total}<form method=post action="
                 f"'/_standin/checkout/{escape(cs['id'])}/pay'>{card}<p>{buttons}</p></form>")


def declined(cs: dict[str, Any], message: str) -> str:
    return _page("Payment declined", f"<p id=error>{escape(message)}</p>"
                 f"<p><a href='/_standin/checkout/{escape(cs['id'])}'>Try another card</a></p>")


def portal(session: dict[str, Any], customer: dict[str, Any], card: dict[str, Any] | None, done: bool) -> str:
    current = f"{card['card']['brand']} •••• {card['card']['last4']}" if card else "none"
    notice = "<p id=updated>Card updated.</p>" if done else ""
    back = f"<p><a id=return href='{escape(session['return_url'])}'>Return</a></p>" if session["return_url"] else ""
    return _page("Billing portal", f"{notice}<p>Customer {escape(customer['email'] or customer['id'])}</p>"
                 f"<p>Card: <span id=card>{escape(current)}</span></p>"
                 f"<form method=post action='/_standin/portal/{escape(session['id'])}/card'>"
                 "<select name=payment_method><option value=pm_card_visa>Visa 4242</option>"
                 "<option value=pm_card_mastercard>Mastercard 4444</option>"
                 "<option value=pm_card_chargeDeclined>Visa 0002 (declines)</option></select>"
                 f"<button id=update-card>Update card</button></form>{back}")


def invoice(inv: dict[str, Any]) -> str:
    lines = "".join(f"<li>{escape(str(line['description']))}: {money(line['amount'], line['currency'])}</li>"
                    for line in inv["lines"]["data"])
    return _page(f"Invoice {inv['number'] or inv['id']}", f"<p>Status: <span id=status>{escape(inv['status'])}"
                 f"</span></p><ul>{lines}</ul><p>Paid: {money(inv['amount_paid'], inv['currency'])}</p>"
                 f"<p><a href='/_standin/invoices/{escape(inv['id'])}/pdf'>PDF</a></p>")


def receipt(ch: dict[str, Any]) -> str:
    return _page("Receipt", f"<p>Paid {money(ch['amount_captured'], ch['currency'])} with "
                 f"{escape(ch['payment_method_details']['card']['brand'])} •••• "
                 f"{escape(ch['payment_method_details']['card']['last4'])}</p>"
                 f"<p>Refunded {money(ch['amount_refunded'], ch['currency'])}</p>")


def pdf(text: str) -> bytes:
    """A one-page PDF saying ``text`` (ASCII), with a correct cross-reference table."""
    safe = text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 72 720 Td ({safe}) Tj ET".encode()
    parts = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
             b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
             b"/Resources << /Font << /F1 5 0 R >> >> >>",
             b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
             b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, part in enumerate(parts, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, part)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(parts) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(parts) + 1, xref)
    return bytes(out)
