"""``credits serve``, ``worker`` and ``scheduler``: the long-running processes, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from ledger.bootstrap import open_ledger
from ledger.cli.runner import fail, run
from ledger.db import migrate as run_migrations
from ledger.settings import load_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes, each on its own socket.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    api_only: Annotated[bool, typer.Option(help="Only the API: no relay, worker or scheduler in this process.")]
    = False,
) -> None:
    """Run the HTTP API on DATABASE_URL / REDIS_URL, or on the embedded default; with the relay, a
    worker and the scheduler in the same process unless --api-only (small installs need nothing else).

    On SIGTERM or Ctrl-C it stops accepting, lets requests in flight finish and their commands
    commit, then exits.
    """
    import os
    import signal
    import sys

    import uvicorn

    from ledger.api.processes import APP, OPTIONS, Workers, uvicorn_config

    # Resolve (and start, on the embedded default) the servers once here, so worker processes
    # share them instead of racing to start their own; migrate once too.
    settings = load_settings()
    try:
        from ledger.embedded import resolve_urls

        db_url, redis_url = resolve_urls(settings, need_redis=True)
        run_migrations(db_url)
    except (DBAPIError, OSError) as exc:
        fail(f"cannot use the database: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")
    os.environ["DATABASE_URL"] = db_url
    if api_only:
        os.environ["CREDITS_SERVE_BACKGROUND"] = "false"
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    if workers > 1 and sys.platform.startswith("linux"):
        # A socket per process (SO_REUSEPORT), so connections spread over the processes.
        try:
            supervisor = Workers(host, port, workers, log_level)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        typer.echo(f"serving the API on http://{host}:{supervisor.port} ({workers} workers)", err=True)
        raise typer.Exit(supervisor.run())
    # uvicorn stops gracefully on SIGTERM, then re-raises it: exit cleanly here so exit handlers
    # run (the embedded Redis is shut down by one) and supervisors see status 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    typer.echo(f"serving the API on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''})",
               err=True)
    if workers > 1:
        # SO_REUSEPORT spreads connections over sockets only on Linux: elsewhere uvicorn's own
        # supervisor, one socket shared by the processes.
        uvicorn.run(APP, host=host, port=port, workers=workers, log_level=log_level, **OPTIONS)
    else:
        uvicorn.Server(uvicorn_config(host, port, log_level)).run()


def _until_signalled(stop: asyncio.Event) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def worker(
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="Actor threads (default CREDITS_WORKER_THREADS).")]
    = None,
    relay: Annotated[bool, typer.Option(help="Also run the log relay (one is active at a time).")] = True,
    projections: Annotated[bool, typer.Option(help="Also keep the read models current (history, activities, usage).")]
    = True,
) -> None:
    """Run a Dramatiq worker (and the relay and projections) on BROKER_URL / REDIS_URL until SIGTERM or Ctrl-C."""
    from projections.runner import projecting
    from workers.runner import Background, background_tasks

    async def main() -> None:
        settings = load_settings()
        bg = Background(settings)
        try:
            bg.start_worker(threads)
            typer.echo(f"worker running ({threads or settings.worker_threads} threads"
                       f"{', relay' if relay else ''}{', projections' if projections else ''}); Ctrl-C to stop",
                       err=True)
            stop = asyncio.Event()
            _until_signalled(stop)
            async with open_ledger(settings) as ledger, background_tasks(bg, ledger, relay=relay, scheduler=False):
                if projections:
                    async with projecting(ledger.engine):
                        await stop.wait()
                else:
                    await stop.wait()
        finally:
            await asyncio.to_thread(bg.close)

    run(main())


def scheduler(
    interval: Annotated[float | None, typer.Option(min=0.1, help="Seconds between ticks.")] = None,  # float-ok
    once: Annotated[bool, typer.Option(help="Run one tick and exit (for cron).")] = False,
) -> None:
    """Send due work (hourly charges, allowances, expiries, summaries) to the workers, every tick."""
    from workers.runner import Background

    async def main() -> None:
        settings = load_settings()
        bg = Background(settings)
        try:
            async with open_ledger(settings) as ledger:
                sched = bg.scheduler(ledger)
                if once:
                    t = await sched.tick()
                    typer.echo("skipped: another scheduler holds the lease" if t.skipped else
                               f"sent {t.hours} hourly charges, {t.allowances} allowances, {t.expiries} expiries,"
                               f" {t.summaries} summaries")
                    return
                stop = asyncio.Event()
                _until_signalled(stop)
                typer.echo("scheduler running; Ctrl-C to stop", err=True)
                await sched.run(stop, interval or settings.scheduler_interval_s)
        finally:
            bg.close()

    run(main())
