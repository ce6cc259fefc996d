"""Stripe's webhook signature: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""

from __future__ import annotations

import hashlib
import hmac


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return mac.hexdigest()


def header(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed at ``timestamp``."""
    return f"t={timestamp},v1={signature(payload, secret, timestamp)}"
