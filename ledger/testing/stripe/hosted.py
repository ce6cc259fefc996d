"""Routes of the hosted pages: Checkout, the billing portal, invoices (HTML and PDF) and receipts."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ledger.testing.stripe import pages
from ledger.testing.stripe.errors import StripeError

if TYPE_CHECKING:
    from ledger.testing.stripe.standin import StripeStandIn


async def _form(request: Request) -> dict[str, str]:
    """A page's urlencoded form (read here: Starlette's form parser needs an extra library)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def routes(s: StripeStandIn) -> list[Route]:
    store = s.store

    def _missing(error: StripeError) -> Response:
        return HTMLResponse(f"<p>{error.body['message']}</p>", status_code=error.status)

    async def checkout_page(request: Request) -> Response:
        try:
            with store.lock:
                cs = store.get("checkout.session", request.path_params["id"])
                return HTMLResponse(pages.checkout(cs, store.line_items.get(cs["id"], [])))
        except StripeError as error:
            return _missing(error)

    async def checkout_pay(request: Request) -> Response:
        form = await _form(request)
        session_id = request.path_params["id"]
        action = str(form.get("action", "pay"))
        try:
            cs = store.get("checkout.session", session_id)
            if action == "cancel":
                return RedirectResponse(cs["cancel_url"] or f"/_standin/checkout/{session_id}", status_code=303)
            await run_in_threadpool(s.complete_checkout, session_id, outcome="async" if action == "pay_async"
                                    else "paid", payment_method=str(form.get("payment_method", "pm_card_visa")))
        except StripeError as error:
            if error.status == 402:
                return HTMLResponse(pages.declined(cs, error.body["message"]), status_code=402)
            return _missing(error)
        target = (cs["success_url"] or f"/_standin/checkout/{session_id}").replace("{CHECKOUT_SESSION_ID}", session_id)
        return RedirectResponse(target, status_code=303)

    async def portal_page(request: Request) -> Response:
        try:
            with store.lock:
                session = store.get("billing_portal.session", request.path_params["id"])
                customer = store.get("customer", session["customer"])
                card = store.objects.get(customer["invoice_settings"]["default_payment_method"] or "")
                return HTMLResponse(pages.portal(session, customer, card, request.query_params.get("updated") == "1"))
        except StripeError as error:
            return _missing(error)

    async def portal_card(request: Request) -> Response:
        form = await _form(request)
        try:
            session = store.get("billing_portal.session", request.path_params["id"])
            await run_in_threadpool(s.update_card, session["customer"], str(form.get("payment_method", "pm_card_visa")))
        except StripeError as error:
            return _missing(error)
        return RedirectResponse(f"/_standin/portal/{session['id']}?updated=1", status_code=303)

    async def invoice_page(request: Request) -> Response:
        try:
            return HTMLResponse(pages.invoice(store.get("invoice", request.path_params["id"])))
        except StripeError as error:
            return _missing(error)

    async def invoice_pdf(request: Request) -> Response:
        try:
            inv = store.get("invoice", request.path_params["id"])
        except StripeError as error:
            return _missing(error)
        text = f"Invoice {inv['number'] or inv['id']}: {pages.money(inv['amount_paid'], inv['currency'])} paid"
        return Response(pages.pdf(text), media_type="application/pdf")

    async def receipt_page(request: Request) -> Response:
        try:
            return HTMLResponse(pages.receipt(store.get("charge", request.path_params["id"])))
        except StripeError as error:
            return _missing(error)

    return [
        Route("/_standin/checkout/{id}", checkout_page, methods=["GET"]),
        Route("/_standin/checkout/{id}/pay", checkout_pay, methods=["POST"]),
        Route("/_standin/portal/{id}", portal_page, methods=["GET"]),
        Route("/_standin/portal/{id}/card", portal_card, methods=["POST"]),
        Route("/_standin/invoices/{id}", invoice_page, methods=["GET"]),
        Route("/_standin/invoices/{id}/pdf", invoice_pdf, methods=["GET"]),
        Route("/_standin/receipts/{id}", receipt_page, methods=["GET"]),
    ]
