"""Money in from ``credits serve`` on the embedded default, with ``credits stripe-standin`` as Stripe:
a pack bought through Checkout lands once, a card saved through a setup Checkout, and a debit
below the threshold refilled by the worker, off-session, once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ledger.client import Client
from ledger.embedded import start_embedded_postgres, stop_embedded_postgres
from tests.ledger.api.live import free_port
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command, run_credits
from tests.ledger.cli.test_serve import start_serve, stop

pytestmark = pytest.mark.slow

UCR = 1_000_000
PAGES = {"success_url": "https://app.example.com/billing?ok=1", "cancel_url": "https://app.example.com/billing"}


def start_standin(port: int, webhook_url: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``credits stripe-standin`` and the settings it prints (``STRIPE_API_BASE`` and the rest)."""
    proc = subprocess.Popen([*credits_command(), "stripe-standin", "--port", str(port), "--webhook-url", webhook_url,
                             "--webhook-secret", "whsec_e2e"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    printed = [proc.stdout.readline().strip() for _ in range(5)]
    settings = dict(line.split("=", 1) for line in printed if line.startswith("STRIPE_"))
    assert set(settings) >= {"STRIPE_API_BASE", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"}, printed
    return proc, settings


def until(what: str, check: object, timeout_s: float = 90.0) -> None:  # float-ok: a duration
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_money_in_from_serve_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "credits"
    api_port, stripe_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api_port}"
    standin, stripe = start_standin(stripe_port, f"{base}/v1/stripe/webhook")
    control = stripe["STRIPE_API_BASE"] + "/_standin"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CREDITS_DATA_DIR=str(data_dir), **stripe)
    try:
        serve = start_serve(env, api_port)
        try:
            created = run_credits("keys", "create", "--role", "operator", "--name", "t", data_dir=data_dir,
                                  timeout=120)
            assert created.returncode == 0, created.stdout + created.stderr
            op = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
            assert httpx.post(f"{base}/v1/accounts", headers=op, json={"id": "gpu", "name": "GPU", "plan": "free"},
                              timeout=10).status_code == 201
            admin_key = httpx.post(f"{base}/v1/accounts/gpu/api-keys", headers=op,
                                   json={"role": "admin", "name": "a"}, timeout=10).json()["key"]
            with Client(base, admin_key) as admin:
                start = admin.credits.balance().balance_ucr
                # A $5 pack through Checkout: 500 credits once Stripe says it was paid.
                session = admin.billing.checkout("credits-500", **PAGES)
                httpx.post(f"{control}/checkout/{session.session_id}/complete", json={}, timeout=10).raise_for_status()
                httpx.post(f"{control}/flush", json={}, timeout=30).raise_for_status()
                assert admin.credits.balance().balance_ucr == start + 500 * UCR
                # Auto-refill: 2,000 credits below 500, paid with a card saved through Checkout.
                admin.billing.auto_refill(enabled=True, threshold=500, amount=2000)
                card = admin.billing.save_card(**PAGES)
                httpx.post(f"{control}/checkout/{card.session_id}/complete", json={}, timeout=10).raise_for_status()
                httpx.post(f"{control}/flush", json={}, timeout=30).raise_for_status()
                assert admin.billing.auto_refill_settings().payment_method_saved
                spend = (start + 500 * UCR - 400 * UCR) // UCR  # emails at 1 credit: down to 400
                r = httpx.post(f"{base}/v1/usage", headers=op, timeout=10, json={"events": [{
                    "account_id": "gpu", "operation": "email", "quantity": spend, "idempotency_key": "burn"}]})
                assert r.json()["results"][0]["status"] == "created", r.text
                # The relay finds the crossing, the worker pays it off-session: 400 + 2,000.
                until("the auto-refill", lambda: admin.credits.balance().balance_ucr == 2400 * UCR)
                time.sleep(2)  # any second refill would show by now
                assert admin.credits.balance().balance_ucr == 2400 * UCR
                kinds = sorted(i.kind for i in admin.billing.invoices().data)
                assert kinds == ["auto_refill", "pack"], kinds
            succeeded = httpx.get(f"{control}/events", params={"type": "payment_intent.succeeded"}, timeout=10).json()
            refills = [e for e in succeeded if e["type"] == "payment_intent.succeeded"
                       and e["data"]["object"]["metadata"].get("kind") == "auto_refill"]
            assert len(refills) == 1
        finally:
            out = stop(serve)
        assert serve.returncode == 0, out
        assert "Traceback" not in out, out
    finally:
        standin.terminate()
        standin.communicate(timeout=30)
        if (data_dir / "pg").exists():  # the embedded PostgreSQL outlives `credits serve` by design
            start_embedded_postgres(data_dir)
            stop_embedded_postgres(data_dir)
