"""The part of Stripe's REST API (``/v1/...``) the project calls: a table of routes and one
dispatcher that checks the API key, replays idempotent requests and renders Stripe's errors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from ledger.testing.stripe import billing_objects, checkout, forms, objects, payments, subscriptions
from ledger.testing.stripe.errors import StripeError, idempotency_conflict, invalid_request, unauthorized
from ledger.testing.stripe.store import CURRENT_REQUEST, RequestInfo, Saved, Store, new_id

Handler = Callable[[Store, list[str], dict[str, Any]], dict[str, Any]]

_ID = r"([A-Za-z0-9_]+)"


def _get(kind: str) -> Handler:
    return lambda store, ids, params: store.get(kind, ids[0])


def _list(kind: str, url: str, *filters: str) -> Handler:
    def handler(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
        chosen = {name: forms.as_str(params, name) for name in filters}
        return objects.page(store.all(kind, **chosen), url, params)
    return handler


def _events(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
    types = [t for t in [forms.as_str(params, "type"), *forms.as_list(params, "types")] if t]
    found = [e for e in store.all("event") if not types or any(
        e["type"] == t or (t.endswith(".*") and e["type"].startswith(t[:-1])) for t in types)]
    return objects.page(found, "/v1/events", params)


def _payment_methods(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
    customer = ids[0] if ids else forms.as_str(params, "customer", required=True)
    store.get("customer", customer or "", "customer")
    return objects.page(store.all("payment_method", customer=customer), "/v1/payment_methods", params)


def _detach(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
    pm = store.get("payment_method", ids[0])
    pm["customer"] = None
    store.emit("payment_method.detached", pm)
    return pm


def _line_items(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
    store.get("checkout.session", ids[0], "session")
    return objects.page(store.line_items[ids[0]], f"/v1/checkout/sessions/{ids[0]}/line_items", params)


def _create_product(store: Store, ids: list[str], params: dict[str, Any]) -> dict[str, Any]:
    return store.add(billing_objects.product(forms.as_str(params, "name", required=True) or ""))


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [(m, re.compile(f"^/v1/{p}$"), h) for m, p, h in [
    ("POST", "customers", lambda s, i, p: payments.create_customer(s, p)),
    ("GET", f"customers/{_ID}", _get("customer")),
    ("POST", f"customers/{_ID}", lambda s, i, p: payments.update_customer(s, i[0], p)),
    ("GET", f"customers/{_ID}/payment_methods", _payment_methods),
    ("GET", "payment_methods", _payment_methods),
    ("GET", f"payment_methods/{_ID}", _get("payment_method")),
    ("POST", f"payment_methods/{_ID}/attach",
     lambda s, i, p: payments.attach(s, i[0], forms.as_str(p, "customer", required=True) or "")),
    ("POST", f"payment_methods/{_ID}/detach", _detach),
    ("GET", f"setup_intents/{_ID}", _get("setup_intent")),
    ("POST", "payment_intents", lambda s, i, p: payments.create_payment_intent(s, p)),
    ("GET", "payment_intents", _list("payment_intent", "/v1/payment_intents", "customer")),
    ("GET", f"payment_intents/{_ID}", _get("payment_intent")),
    ("GET", "charges", _list("charge", "/v1/charges", "customer", "payment_intent")),
    ("GET", f"charges/{_ID}", _get("charge")),
    ("POST", "refunds", lambda s, i, p: payments.create_refund(s, p)),
    ("GET", "refunds", _list("refund", "/v1/refunds", "charge", "payment_intent")),
    ("GET", f"refunds/{_ID}", _get("refund")),
    ("GET", "disputes", _list("dispute", "/v1/disputes", "charge", "payment_intent")),
    ("GET", f"disputes/{_ID}", _get("dispute")),
    ("POST", "products", _create_product),
    ("GET", f"products/{_ID}", _get("product")),
    ("POST", "prices", lambda s, i, p: checkout.create_price(s, p, "price")),
    ("GET", f"prices/{_ID}", _get("price")),
    ("POST", "checkout/sessions", lambda s, i, p: checkout.create_session(s, p)),
    ("GET", "checkout/sessions", _list("checkout.session", "/v1/checkout/sessions", "payment_intent", "customer",
                                       "subscription", "status")),
    ("GET", f"checkout/sessions/{_ID}", _get("checkout.session")),
    ("GET", f"checkout/sessions/{_ID}/line_items", _line_items),
    ("POST", f"checkout/sessions/{_ID}/expire", lambda s, i, p: checkout.expire(s, i[0])),
    ("GET", "subscriptions", _list("subscription", "/v1/subscriptions", "customer", "status")),
    ("GET", f"subscriptions/{_ID}", _get("subscription")),
    ("POST", f"subscriptions/{_ID}", lambda s, i, p: subscriptions.update(s, i[0], p)),
    ("DELETE", f"subscriptions/{_ID}", lambda s, i, p: subscriptions.cancel(s, i[0])),
    ("GET", "invoices", _list("invoice", "/v1/invoices", "customer", "subscription", "status")),
    ("GET", f"invoices/{_ID}", _get("invoice")),
    ("GET", f"invoices/{_ID}/lines", lambda s, i, p: objects.page(
        s.get("invoice", i[0])["lines"]["data"], f"/v1/invoices/{i[0]}/lines", p)),
    ("POST", "billing_portal/sessions", lambda s, i, p: subscriptions.create_portal_session(s, p)),
    ("GET", "events", _events),
    ("GET", f"events/{_ID}", _get("event")),
]]


def authenticate(authorization: str | None) -> str:
    """The secret key of ``Authorization: Bearer sk_test_...`` (any test key), else Stripe's 401."""
    if not authorization:
        raise unauthorized("You did not provide an API key. You need to provide your API key in the Authorization "
                           "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.startswith(("sk_test_", "rk_test_")) or len(key) <= len("sk_test_"):
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if key else "(none)"
        raise unauthorized(f"Invalid API Key provided: {shown}")
    return key


def handle(store: Store, method: str, path: str, body: str, query: str, headers: dict[str, str]
           ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Answer one API request: (status, JSON body, extra headers)."""
    request_id = new_id("req_", 14)
    extra = {"Request-Id": request_id, "Stripe-Version": headers.get("stripe-version", "")}
    try:
        api_key = authenticate(headers.get("authorization"))
        params = forms.decode(body if method == "POST" else query)
        key = headers.get("idempotency-key") if method == "POST" else None
        with store.lock:
            if key is not None:
                fingerprint = hashlib.sha256(json.dumps([method, path, params], sort_keys=True).encode()).hexdigest()
                saved = store.idempotent.get((api_key, key))
                if saved is not None:
                    if saved.fingerprint != fingerprint:
                        raise idempotency_conflict(key)
                    return saved.status, saved.body, {**extra, "Idempotent-Replayed": "true"}
            status, answer = _dispatch(store, method, path, params, RequestInfo(request_id, key))
            if key is not None and status in (200, 402):  # a validation error is not kept: a fixed retry may pass
                store.idempotent[(api_key, key)] = Saved(fingerprint, status, answer)
            if key is not None:
                extra["Idempotency-Key"] = key
            return status, answer, extra
    except StripeError as error:
        return error.status, error.payload(), extra


def _dispatch(store: Store, method: str, path: str, params: dict[str, Any], request: RequestInfo
              ) -> tuple[int, dict[str, Any]]:
    token = CURRENT_REQUEST.set(request)
    try:
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                answer = copy.deepcopy(handler(store, list(match.groups()), params))
                for expansion in forms.as_list(params, "expand"):
                    expand(store, answer, str(expansion).split("."))
                return 200, answer
        raise invalid_request(f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or "
                              f"we can help at https://support.stripe.com/.", status=404)
    except StripeError as error:
        return error.status, error.payload()
    finally:
        CURRENT_REQUEST.reset(token)


def expand(store: Store, obj: dict[str, Any], path: list[str]) -> None:
    """Replace the id at ``path`` (``payment_intent``, ``data.customer``, ``line_items``) by its object."""
    if obj.get("object") == "list" and path[0] == "data":
        for item in obj["data"]:
            expand(store, item, path[1:])
        return
    name, rest = path[0], path[1:]
    if name == "line_items" and obj.get("object") == "checkout.session":
        obj[name] = objects.page(store.line_items.get(obj["id"], []), f"/v1/checkout/sessions/{obj['id']}/line_items",
                                 {"limit": "100"})
    elif isinstance(obj.get(name), str) and obj[name] in store.objects:
        obj[name] = copy.deepcopy(store.objects[obj[name]])
    elif name not in obj:
        raise invalid_request(f"This property cannot be expanded ({name}).", param="expand")
    if rest and isinstance(obj.get(name), dict):
        expand(store, obj[name], rest)
