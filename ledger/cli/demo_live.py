"""``credits demo --live``: the real system serving a simulated month over HTTP, then kept running.

One process runs what ``credits serve`` runs (``serve_runtime``: the API, the relay, a worker,
the scheduler and the projections) on the demo's own database (``demo_database_url``, as
``credits demo``), with the Stripe stand-in beside it sending signed webhooks to the API. Time
is the server's clock: a ``ManualClock`` at the start of this month that the demo moves forward a
few hours at a time; at each step the scheduler charges the deployment's hours as they pass, and
the month's usage of those hours is posted to ``/v1/usage`` with the time it happened. The demo
drives the month as a product's backend would (``demo_live_month``: an operator key, HTTP only),
then prints a summary, ``verify``, and the dashboard's address with a fresh account key.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from ledger.cli import render
from ledger.cli.demo import demo_database_url
from ledger.cli.demo_live_month import EPISODES, DemoFailed, LiveMonth
from ledger.cli.demo_month import AI, LABELS, Month, at, month_start
from ledger.clock import HOUR, ManualClock
from ledger.db import recreate_database
from ledger.embedded import resolve_urls
from ledger.keys import create_account_key, create_operator_key
from ledger.settings import Settings, load_settings
from ledger.testing.stripe import StripeStandIn
from ledger.verify import verify

#: When the pack bought twice is bought, and refunded.
MISTAKE_HOUR, REFUND_HOUR = at(10, 16), at(11, 9)


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts (port 0: a free one), so the stand-in knows
    where to send its webhooks."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


@contextlib.asynccontextmanager
async def serving(app: object, sock: socket.socket) -> AsyncIterator[tuple[uvicorn.Server, asyncio.Task[None]]]:
    """uvicorn on ``sock`` in this event loop until the block ends, or Ctrl-C (``should_exit``; the task ends)."""
    # uvicorn takes SIGINT/SIGTERM while it serves, and raises them again once stopped: answered
    # here by nothing, as the task ending already says it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise DemoFailed("the API did not start")
        await asyncio.sleep(0.02)
    try:
        yield server, task
    finally:
        server.should_exit = True
        await task


async def run_live(host: str, port: int, until_done: bool, step_hours: int, run_id: str | None = None,
                   settings: Settings | None = None) -> bool:
    """Run the live demo; True when ``verify`` is clean (and, with ``until_done``, once the month is over)."""
    settings = settings or load_settings()
    try:
        sock = listen(host, port)  # first: a port in use fails before anything starts
    except OSError as exc:
        raise DemoFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with sock:
        return await _live(sock, host, until_done, step_hours, run_id, settings)


async def _live(sock: socket.socket, host: str, until_done: bool, step_hours: int, run_id: str | None,
                settings: Settings) -> bool:
    from ledger.api.app import create_app, serve_runtime

    out = render.console()
    start = month_start(datetime.now(UTC))
    clock = ManualClock(start)
    served, url = await demo_database_url(settings)
    _, redis_url = await asyncio.to_thread(resolve_urls, settings, need_redis=True)
    name = make_url(url).database
    assert name is not None
    await recreate_database(served, name)
    base = f"http://{host}:{sock.getsockname()[1]}"
    standin = StripeStandIn(f"{base}/v1/stripe/webhook").start()
    # Its own broker namespace: a `credits serve` on the same Redis never takes the demo's messages.
    live = settings.model_copy(update={
        "database_url": url, "redis_url": redis_url, "stripe_api_key": standin.api_key,
        "stripe_api_base": standin.base_url, "stripe_webhook_secret": standin.webhook_secret,
        "broker_namespace": f"credits-demo-{name}", "scheduler_interval_s": 0.1,
        # A month of one product's traffic arrives within a minute: not what plan limits are for.
        "rate_limits": False,
        # One demo on a server others share: a few connections are plenty.
        "pool_size": min(settings.pool_size, 10), "worker_threads": min(settings.worker_threads, 4)})
    began = time.perf_counter()
    try:
        async with serve_runtime(live, clock=clock) as rt, serving(create_app(rt), sock) as (server, serve_task):
            op_key, _ = await create_operator_key(rt.ledger.engine, "credits demo --live")
            out.print(f"[bold]credits demo --live[/]: {start:%B %Y} on {base}, database {name},"
                      f" Stripe stand-in on {standin.base_url}")
            async with httpx.AsyncClient(base_url=base, timeout=30,
                                         headers={"Authorization": f"Bearer {op_key.key}"}) as http, \
                    httpx.AsyncClient(base_url=standin.base_url, timeout=30) as controls:
                month = Month(rt.ledger.card, start, run_id or f"{start:%Y%m}")
                progress = Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("hours"), TimeElapsedColumn(), console=out)

                def say(product: str, message: str) -> None:
                    progress.console.print(f"[dim]{render.when(clock.now())}[/]  {LABELS[product]:<9}  {message}")

                driver = LiveMonth(month, http, controls, say)
                try:
                    with progress:
                        task = progress.add_task("month", total=month.hours)
                        await drive(driver, clock, month, step_hours, lambda h: progress.update(task, completed=h),
                                    stopped=lambda: server.should_exit)
                        await driver.alerts_and_refills()
                except httpx.TransportError as exc:
                    # Ctrl-C stops the API mid-month: the driver's next request finds it gone.
                    raise DemoFailed("stopped before the month was over" if server.should_exit else str(exc)) from None
                # What the dashboard's page answers, as a browser opening the address would see it.
                dashboard = (await http.get("/dashboard", headers={"Authorization": ""})).status_code
            simulated = time.perf_counter() - began
            report = await verify(rt.ledger.engine, accounts=list(month.ids.values()))
            key, _ = await create_account_key(rt.ledger, month.ids[AI], "admin", "dashboard (credits demo --live)")
            assert key is not None
            out.print(summary(driver))
            out.print(f"{driver.requests} HTTP requests ({driver.usage_events} usage events metered, {driver.charges}"
                      f" gated charges paid, {driver.refused} refused with a 402), simulated in {simulated:.1f} s")
            for mismatch in report.mismatches:
                out.print(str(mismatch), markup=False)
            out.print(report.summary(), markup=False)
            out.print(f"dashboard: {base}/dashboard (HTTP {dashboard})", markup=False, soft_wrap=True)
            out.print(f"sign in with this admin key of {month.ids[AI]} (shown once):", markup=False)
            out.print(key.key, markup=False, soft_wrap=True)
            if not until_done:
                out.print("serving until Ctrl-C (the clock stays at the month's end)")
                await serve_task
            return report.clean and set(driver.episodes) == set(EPISODES) and dashboard == 200
    finally:
        standin.stop()


async def drive(driver: LiveMonth, clock: ManualClock, month: Month, step_hours: int,
                done: Callable[[int], object], stopped: Callable[[], bool]) -> None:
    """The month, ``step_hours`` at a time: the clock moves, the hours' usage is posted, the
    scheduler's charges for them are awaited; the one-off episodes happen at their hour."""
    await driver.open_accounts()
    h = 0
    while h < month.hours:
        if stopped():
            raise DemoFailed("stopped before the month was over")
        nxt = min(h + step_hours, month.hours)
        for episode_hour, action in ((MISTAKE_HOUR, driver.mistaken_purchase), (REFUND_HOUR, driver.refund_mistake)):
            if h < episode_hour <= nxt:
                clock.set(month.start + episode_hour * HOUR)
                await action()
        clock.set(month.start + nxt * HOUR)
        await driver.meter(range(h + 1, nxt + 1))
        if nxt < month.hours:  # the last step is the next month's first hour
            await driver.hours_charged(nxt)
        await driver.observe()
        h = nxt
        done(h)


def summary(driver: LiveMonth) -> Table:
    table = Table(title="what the month did (over HTTP and signed webhooks)")
    table.add_column("episode")
    table.add_column("what happened")
    for episode in EPISODES:
        table.add_row(episode, driver.episodes.get(episode, "[red]did not happen[/]"))
    return table
