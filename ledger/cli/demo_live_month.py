"""The month ``credits demo --live`` drives through HTTP: the three seed products' accounts, their
episodes, and their usage, sent to a running API and the Stripe stand-in's controls.

Usage is ``demo_month``'s (the same seeded generator, the same accounts); what ``credits demo``
writes straight to the ledger (purchases with fake Stripe ids, hourly charges) happens here the
way it does in production: purchases through Checkout, completed on the stand-in, whose signed
webhooks credit them; deployment hours charged by the scheduler as the server's clock passes
them; alerts and auto-refills raised by the relay and the worker from the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ledger import commands as c
from ledger.cli.demo_month import AI, BUDGET_UCR, GPU, MSG, Month

#: Where Checkout sends the customer after paying (the demo never opens the page).
PAGES = {"success_url": "https://example.com/paid", "cancel_url": "https://example.com/billing"}
GPU_DEPLOYMENT = "inference-api"
#: Each episode the summary tells, in order.
EPISODES = ("purchase", "coupon", "auto-refill", "budget alert", "refund", "paused deployment")


class DemoFailed(RuntimeError):
    """The system did not do what the month expected in time."""


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:  # float-ok
    """Poll ``check`` until it holds; DemoFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def usage_event(cmd: c.Meter) -> dict[str, Any]:
    """A metered command of ``demo_month`` as one item of ``POST /v1/usage``."""
    item: dict[str, Any] = {"account_id": cmd.account_id, "operation": cmd.operation,
                            "idempotency_key": cmd.idempotency_key,
                            "attribution": cmd.attribution.model_dump(exclude_none=True, mode="json")}
    if cmd.quantities:
        item["quantities"] = dict(cmd.quantities)
    else:
        item["quantity"] = cmd.quantity
    if cmd.occurred_at is not None:
        item["occurred_at"] = cmd.occurred_at.isoformat()
    return item


@dataclass
class LiveMonth:
    """Talks to the API (``http``, an operator key) and the stand-in's controls (``standin``)."""

    month: Month
    http: httpx.AsyncClient
    standin: httpx.AsyncClient
    say: Callable[[str, str], None]
    #: What happened, per episode: one line each, for the summary.
    episodes: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    usage_events: int = 0
    refills: int = 0
    #: Gated charges paid, and refused with a 402.
    charges: int = 0
    refused: int = 0
    #: Alerts and refills already told.
    seen: set[str] = field(default_factory=set)

    async def call(self, method: str, path: str, json: Any = None, expect: int = 200) -> Any:
        self.requests += 1
        r = await self.http.request(method, path, json=json)
        if r.status_code != expect:
            raise DemoFailed(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def acct(self, product: str) -> str:
        return f"/v1/accounts/{self.month.ids[product]}"

    async def buy(self, product: str, pack: str) -> dict[str, Any]:
        """A pack through Checkout: the session opened by the API, paid on the stand-in, credited
        by its signed webhook. Returns the purchase as ``invoices`` lists it."""
        before = len((await self.call("GET", f"{self.acct(product)}/invoices"))["data"])
        session = await self.call("POST", f"{self.acct(product)}/checkout", {"pack": pack, **PAGES})
        await self.complete(session["session_id"])

        async def landed() -> bool:
            return len((await self.call("GET", f"{self.acct(product)}/invoices"))["data"]) > before

        await until(f"the webhook of checkout {session['session_id']}", landed)
        purchase: dict[str, Any] = (await self.call("GET", f"{self.acct(product)}/invoices"))["data"][0]
        self.say(product, f"bought pack {pack} through Checkout: ${purchase['paid']} -> {purchase['credits']} credits"
                          " (signed webhook)")
        return purchase

    async def complete(self, session_id: str) -> None:
        r = await self.standin.post(f"/_standin/checkout/{session_id}/complete", json={})
        if r.status_code != 200:
            raise DemoFailed(f"the stand-in did not complete {session_id}: {r.status_code} {r.text[:300]}")

    # ---- the month's one-off episodes ----------------------------------------------------------

    async def open_accounts(self) -> None:
        from ledger.cli.demo_month import LABELS, PLANS

        for p in (AI, GPU, MSG):
            await self.call("POST", "/v1/accounts", {"id": self.month.ids[p], "name": f"Demo {LABELS[p]} (live)",
                                                     "plan": PLANS[p]}, expect=201)
        # AI tokens: a pack, a welcome coupon, and a monthly budget the month's tokens cross.
        first = await self.buy(AI, "starter")
        self.episodes["purchase"] = f"pack {first['pack']}: {first['credits']} credits for ${first['paid']}"
        grant = await self.call("POST", f"{self.acct(AI)}/coupons", {"code": "WELCOME10"}, expect=201)
        self.episodes["coupon"] = f"WELCOME10: {grant['amount']} promotional credits"
        self.say(AI, f"coupon WELCOME10 redeemed: {grant['amount']} credits")
        await self.call("PUT", f"{self.acct(AI)}/budget",
                        {"monthly_limit_ucr": BUDGET_UCR, "warn_pct": 80, "critical_pct": 95})
        # GPU hours: a pack, then an inference deployment charged every hour until the credits run out.
        await self.buy(GPU, "credits-5000")
        await self.call("POST", f"{self.acct(GPU)}/deployments",
                        {"deployment_id": GPU_DEPLOYMENT, "instance_type": "gpu-s"}, expect=201)
        self.say(GPU, f"deployment {GPU_DEPLOYMENT} started on gpu-s")
        # Messaging: auto-refill with a card saved through a setup Checkout.
        await self.call("PUT", f"{self.acct(MSG)}/auto-refill",
                        {"enabled": True, "threshold": 1000, "amount": 3000, "daily_cap": 20000})
        setup = await self.call("POST", f"{self.acct(MSG)}/auto-refill/payment-method", PAGES)
        await self.complete(setup["session_id"])

        async def saved() -> bool:
            return bool((await self.call("GET", f"{self.acct(MSG)}/auto-refill"))["payment_method_saved"])

        await until("the saved card's webhook", saved)
        self.say(MSG, "auto-refill set: 3000 credits below 1000, card saved through Checkout")

    async def mistaken_purchase(self) -> None:
        """A pack bought twice by mistake (day 10), refunded by an operator the next day."""
        self.mistake = await self.buy(MSG, "credits-1000")

    async def refund_mistake(self) -> None:
        refund = await self.call("POST", f"{self.acct(MSG)}/refunds",
                                 {"purchase_id": self.mistake["id"], "reason": "bought twice"}, expect=201)
        self.episodes["refund"] = f"{refund['amount']} credits taken back, Stripe refund {refund['stripe_refund']}"
        self.say(MSG, f"refund of the pack bought twice: {refund['amount']} credits, through Stripe")

    # ---- every step ----------------------------------------------------------------------------

    async def meter(self, hours: range) -> None:
        """The usage of ``hours`` (``demo_month``'s): metered in batches of ``POST /v1/usage``, and the
        interactive requests the product gates on the balance as charges (concurrently)."""
        commands = [cmd for h in hours for cmd in self.month.usage(h)]
        events = [usage_event(cmd) for cmd in commands if isinstance(cmd, c.Meter)]
        for i in range(0, len(events), 1000):
            out = await self.call("POST", "/v1/usage", {"events": events[i:i + 1000]})
            bad = [r for r in out["results"] if r["status"] not in ("created", "replayed")]
            if bad:
                raise DemoFailed(f"usage not recorded: {bad[0]}")
        self.usage_events += len(events)
        await asyncio.gather(*(self.charge(cmd) for cmd in commands if isinstance(cmd, c.Charge)))

    async def charge(self, cmd: c.Charge) -> None:
        """A gated charge: 201, or 402 when the balance (or a limit) does not cover it: counted, and
        told the first time."""
        self.requests += 1
        r = await self.http.post(f"/v1/accounts/{cmd.account_id}/charges", headers={
            "Idempotency-Key": cmd.idempotency_key or ""}, json={
            "operation": cmd.operation, "quantities": dict(cmd.quantities or {}),
            "attribution": cmd.attribution.model_dump(exclude_none=True, mode="json")})
        if r.status_code == 201:
            self.charges += 1
        elif r.status_code == 402:
            self.refused += 1
            if self.refused == 1:
                self.say(AI, f"[red]402[/] a gated request refused: {r.json()['reason']}")
        else:
            raise DemoFailed(f"POST charges: {r.status_code} {r.text[:300]}")

    async def deployment(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = (await self.call("GET", f"{self.acct(GPU)}/deployments"))["data"]
        return next(d for d in found if d["id"] == GPU_DEPLOYMENT)

    async def hours_charged(self, hour: int) -> None:
        """Wait until the scheduler has charged the deployment's hours up to ``hour`` (or paused it)."""
        async def caught_up() -> bool:
            d = await self.deployment()
            return bool(d["status"] != "running" or d["hours_charged"] > hour)

        await until(f"hour {hour} of {GPU_DEPLOYMENT}", caught_up)
        d = await self.deployment()
        if d["status"] == "paused" and "paused deployment" not in self.episodes:
            self.episodes["paused deployment"] = (f"{GPU_DEPLOYMENT} ran {d['hours_charged']} hours"
                                                  f" ({d['credits']} credits), paused: {d['paused_reason']}")
            self.say(GPU, f"[yellow]deployment {GPU_DEPLOYMENT} ran dry[/] after {d['hours_charged']} hours,"
                          f" paused: {d['paused_reason']}")

    # ---- what the relay and the worker did -----------------------------------------------------

    async def observe(self) -> None:
        """Tell the budget alerts and auto-refills that appeared since the last look (the relay and
        the worker raise them from the log, a moment after the usage that caused them)."""
        alerts = (await self.call("GET", f"{self.acct(AI)}/notifications?limit=20"))["data"]
        for a in reversed(alerts):
            if a["kind"] == "budget" and a["id"] not in self.seen:
                self.seen.add(a["id"])
                self.episodes["budget alert"] = f"{a['level']} at {a['threshold_pct']} %: {a['message']}"
                self.say(AI, f"[yellow]budget alert ({a['level']})[/] at {a['threshold_pct']} %: {a['spent']} of"
                                f" {a['limit']} credits spent this month")
        invoices = (await self.call("GET", f"{self.acct(MSG)}/invoices?limit=20"))["data"]
        for i in reversed(invoices):
            if i["kind"] == "auto_refill" and i["id"] not in self.seen:
                self.seen.add(i["id"])
                self.refills += 1
                self.episodes["auto-refill"] = (f"{self.refills} refill(s) of {i['credits']} credits, paid"
                                                " off-session with the saved card")
                self.say(MSG, f"auto-refill: {i['credits']} credits paid off-session (${i['paid']})")

    async def alerts_and_refills(self, timeout_s: float = 30.0) -> None:  # float-ok: a duration
        """Wait for the budget alert and an auto-refill, if the month's steps have not seen them yet."""
        async def both() -> bool:
            await self.observe()
            return {"budget alert", "auto-refill"} <= set(self.episodes)

        await until("the budget alert and an auto-refill", both, timeout_s)
