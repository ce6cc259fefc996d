"""Notifications (alerts from the account's stream) and webhook endpoints over HTTP."""

from __future__ import annotations

import httpx

from ledger.service import Ledger
from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_alerts_are_listed_newest_first(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                              ledger: Ledger) -> None:
    acct = await api_account(credits="100", plan="free")
    admin = bearer(acct.admin)
    r = await client.put(f"/v1/accounts/{acct.id}/budget", headers=admin, json={"monthly_limit": "50"})
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/accounts/{acct.id}/charges", headers=bearer(acct.member),
                          json={"operation": "email", "quantity": 36_000})
    assert r.status_code == 201, r.text
    await ledger.raise_due_alerts(acct.id)
    page = (await client.get(f"/v1/accounts/{acct.id}/notifications", headers=bearer(acct.read))).json()
    assert [(n["kind"], n["threshold_pct"]) for n in page["data"]] == [("budget", 80)]
    # The fixture's signup burn (5 credits on "free") counts as this month's spend too.
    assert page["data"][0]["spent_ucr"] == 41_000_000 and page["data"][0]["limit"] == "50.000000"


async def test_webhook_endpoints_show_the_secret_once_and_refuse_private_urls(
        client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account()
    admin = bearer(acct.admin)
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "ftp://x/y"):
        r = await client.post(f"/v1/accounts/{acct.id}/webhook-endpoints", headers=admin, json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await client.post(f"/v1/accounts/{acct.id}/webhook-endpoints", headers=admin,
                          json={"url": "https://93.184.216.34/hooks", "events": ["AlertRaised"]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    listed = (await client.get(f"/v1/accounts/{acct.id}/webhook-endpoints", headers=admin)).json()["data"]
    assert [(e["id"], e["events"], e["secret"]) for e in listed] == [(created["id"], ["AlertRaised"], None)]
    r = await client.post(f"/v1/accounts/{acct.id}/webhook-endpoints", headers=bearer(acct.member),
                          json={"url": "https://93.184.216.34/hooks"})
    assert r.status_code == 403


async def test_webhook_endpoints_are_listed_disabled_enabled_and_deleted(
        client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account()
    admin = bearer(acct.admin)
    base = f"/v1/accounts/{acct.id}/webhook-endpoints"
    made = []
    for path in ("one", "two"):
        r = await client.post(base, headers=admin, json={"url": f"https://93.184.216.34/{path}"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    one, two = made

    listed = (await client.get(base, headers=admin)).json()["data"]
    assert {e["id"]: (e["status"], e["enabled"], e["secret"]) for e in listed} == {
        one["id"]: ("enabled", True, None), two["id"]: ("enabled", True, None)}, "never the secret again"

    r = await client.patch(f"{base}/{one['id']}", headers=admin, json={"enabled": False})
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["status"], r.json()["enabled"], r.json()["secret"]) == (
        one["id"], "disabled", False, None)
    listed = (await client.get(base, headers=admin)).json()["data"]
    assert {e["id"]: e["status"] for e in listed} == {one["id"]: "disabled", two["id"]: "enabled"}
    r = await client.patch(f"{base}/{one['id']}", headers=admin, json={"enabled": True})
    assert r.status_code == 200 and r.json()["status"] == "enabled", r.text

    r = await client.delete(f"{base}/{two['id']}", headers=admin)
    assert r.status_code == 204 and r.content == b"", r.text
    assert [e["id"] for e in (await client.get(base, headers=admin)).json()["data"]] == [one["id"]]

    # Unknown ids and bad bodies: a 4xx problem, nothing changed.
    for method, path, body, status in (
            ("DELETE", f"{base}/{two['id']}", None, 404),
            ("PATCH", f"{base}/{two['id']}", {"enabled": False}, 404),
            ("PATCH", f"{base}/{one['id']}", {"enabled": "no"}, 422),
            ("PATCH", f"{base}/{one['id']}", {}, 422),
            ("PATCH", f"{base}/{one['id']}", {"enabled": False, "url": "https://93.184.216.34/x"}, 422)):
        r = await client.request(method, path, headers=admin, json=body)
        assert r.status_code == status, (method, path, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    listed = (await client.get(base, headers=admin)).json()["data"]
    assert [(e["id"], e["status"]) for e in listed] == [(one["id"], "enabled")]
    r = await client.patch(f"{base}/{one['id']}", headers=bearer(acct.member), json={"enabled": False})
    assert r.status_code == 403, r.text
