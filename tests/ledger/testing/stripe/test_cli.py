"""``credits stripe-standin`` starts, prints its base URL and secret, answers the SDK and its controls."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import stripe

from tests.ledger.api.live import free_port
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command
from tests.ledger.testing.stripe.conftest import pack
from tests.ledger.testing.stripe.receiver import Receiver


def test_the_cli_stand_in_answers_and_delivers(receiver: Receiver) -> None:
    port = free_port()
    proc = subprocess.Popen([*credits_command(), "stripe-standin", "--port", str(port), "--webhook-url", receiver.url,
                             "--webhook-secret", receiver.secret], cwd=REPO_ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline().strip() for _ in range(5)]
        base_url = f"http://127.0.0.1:{port}"
        assert f"STRIPE_API_BASE={base_url}" in printed and f"STRIPE_WEBHOOK_SECRET={receiver.secret}" in printed
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": base_url}, max_network_retries=0)
        ready = httpx.get(f"{base_url}/_standin", timeout=10)  # queued until uvicorn accepts
        assert ready.json()["webhook_urls"] == [receiver.url]
        cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [pack()]})
        done = httpx.post(f"{base_url}/_standin/checkout/{cs.id}/complete", json={"amount": 450})
        assert done.status_code == 200 and done.json()["amount_total"] == 450
        assert httpx.post(f"{base_url}/_standin/flush", json={}).json() == {"flushed": True}
        assert receiver.types()[-1] == "checkout.session.completed"
        refused = httpx.post(f"{base_url}/_standin/refunds", json={"payment_intent": "pi_nope"})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "resource_missing"
        event_id = receiver.verified()[-1].event_id
        again = httpx.post(f"{base_url}/_standin/events/{event_id}/deliver", json={"times": 2, "concurrently": True})
        assert [d["status"] for d in again.json()] == [200, 200]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_the_cli_refuses_a_port_in_use(receiver: Receiver) -> None:
    assert receiver.server is not None
    busy = receiver.server.server_port
    done = subprocess.run([*credits_command(), "stripe-standin", "--port", str(busy)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stderr.startswith("error: cannot listen")
