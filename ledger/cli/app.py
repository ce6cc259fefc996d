"""The ``credits`` command: Typer commands that parse, call the ledger and render with Rich.

Every command acts on ``DATABASE_URL``, or on the embedded default under ``CREDITS_DATA_DIR``
(started on first use, reused afterwards). Expected failures (a ``LedgerError``, bad input, a
bad rate-card file, an unreachable database) print one ``error: ...`` line on stderr and exit 1;
usage errors exit 2 (Typer's default). Nothing runs at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.bootstrap import database_url, open_ledger
from ledger.cli import render
from ledger.cli.demo import demo_database_url, run_demo
from ledger.db import make_engine, to_async_url
from ledger.db import migrate as run_migrations
from ledger.embedded import running_redis_url
from ledger.errors import InvalidRequest, LedgerError, RateCardError
from ledger.keys import (
    create_account_key,
    create_operator_key,
    find_key,
    list_keys,
    revoke_account_key,
    revoke_operator_key,
)
from ledger.money import format_credits
from ledger.rate_cards import current_rate_card, list_rate_cards, rate_card_version
from ledger.rates import RateCard, load_rate_card_file
from ledger.revocations import announce
from ledger.settings import load_settings
from ledger.verify import verify as verify_ledger

T = TypeVar("T")

app = typer.Typer(
    name="credits",
    help="Credit Ledger: an event-sourced credits ledger for usage-based products.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rates_app = typer.Typer(help="Rate cards: load a new version, show one, list them.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts (operator tools).", no_args_is_help=True)
app.add_typer(rates_app, name="rates")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")


def main() -> None:
    """Entry point of the ``credits`` console script."""
    app()


# ---- plumbing ------------------------------------------------------------------------------

def fail(detail: str) -> NoReturn:
    """Print one ``error:`` line on stderr and exit 1."""
    typer.echo(f"error: {' '.join(detail.split())}", err=True)
    raise typer.Exit(1)


def validation_detail(exc: ValidationError) -> str:
    """The first problem of a pydantic error, as ``field: message``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one ``error:`` line and exit 1."""
    try:
        return asyncio.run(_checked(coro))
    except LedgerError as exc:
        fail(exc.detail)
    except ValidationError as exc:
        fail(validation_detail(exc))
    except (DBAPIError, OSError) as exc:
        # Connection refused, bad credentials, no such database: the environment, not a bug.
        # Any other database error is one, and keeps its traceback.
        if isinstance(exc, DBAPIError) and not _unreachable(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"cannot use the database: {reason}")


#: SQLSTATE classes of "could not get a usable session": connection, authorization, unknown
#: database, too many connections, server starting up or shutting down.
_UNREACHABLE = ("08", "28", "3D", "53", "57P")


def _unreachable(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNREACHABLE)


async def _checked(coro: Coroutine[Any, Any, T]) -> T:
    settings = load_settings()
    if settings.database_url is not None:
        try:
            to_async_url(settings.database_url)
        except ValueError as exc:
            coro.close()
            raise InvalidRequest(f"DATABASE_URL: {exc}") from None
    return await coro


#: ``--demo``: act on the database ``credits demo`` keeps its month in, not the ledger's.
DemoOption = Annotated[bool, typer.Option("--demo", help="Look at what `credits demo` left (its own database).")]


async def ledger_url(demo: bool = False) -> str | None:
    """The database a command acts on: the ledger's (None: ``open_ledger``'s default), or the demo's."""
    return (await demo_database_url(load_settings()))[1] if demo else None


@asynccontextmanager
async def open_engine(url: str | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database, without the writer (for read-only commands)."""
    if url is None:
        url = await asyncio.to_thread(database_url, load_settings())
    await asyncio.to_thread(run_migrations, url)
    engine = make_engine(url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


# ---- commands ------------------------------------------------------------------------------

@app.command()
def migrate() -> None:
    """Bring the database to the newest schema (DATABASE_URL, else the embedded default)."""
    run(_migrate())


async def _migrate() -> None:
    url = await asyncio.to_thread(database_url, load_settings())
    await asyncio.to_thread(run_migrations, url)
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    typer.echo(f"migrated {make_url(url).render_as_string(hide_password=True)} to revision {revision}")


@rates_app.command("load")
def rates_load(file: Annotated[Path, typer.Argument(help="A rate card TOML file.")]) -> None:
    """Validate a rate card file and store it as a new version (old usage keeps its version)."""
    try:
        card = load_rate_card_file(file)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except RateCardError as exc:
        fail(f"{file}: {exc.detail}")
    run(_rates_load(card, file))


async def _rates_load(card: RateCard, file: Path) -> None:
    settings = load_settings()
    check_s = settings.rates_check_s
    async with open_ledger(settings) as ledger:
        added = await ledger.load_rates(card, str(file))
        current = ledger.card.version
    if added:
        typer.echo(f"rates: version {card.version} added ({len(card.operations)} operations,"
                   f" {len(card.packs)} packs, {len(card.plans)} plans); running API and worker processes"
                   f" price new usage with it within {check_s:g} s (CREDITS_RATES_CHECK_S)")
    else:
        note = "" if current == card.version else f" (the current version is {current})"
        typer.echo(f"rates: version {card.version} already loaded{note}")


@rates_app.command("show")
def rates_show(
    version: Annotated[str | None, typer.Option("--version", help="A stored version (default: current).")] = None,
) -> None:
    """Show a rate card: operations, packs and plans."""
    run(_rates_show(version))


async def _rates_show(version: str | None) -> None:
    async with open_ledger() as ledger, ledger.engine.connect() as conn:
        current = await current_rate_card(conn)
        card = current if version is None else await rate_card_version(conn, version)
    if card is None:
        fail(f"no rate card version {version!r}")
    out = render.console()
    for table in render.rates_tables(card, current=current is not None and card.version == current.version):
        out.print(table)


@rates_app.command("list")
def rates_list() -> None:
    """List the stored rate-card versions, oldest first."""
    run(_rates_list())


async def _rates_list() -> None:
    async with open_ledger() as ledger, ledger.engine.connect() as conn:
        versions = await list_rate_cards(conn)
    render.console().print(render.versions_table(versions))


@accounts_app.command("open")
def accounts_open(
    account_id: Annotated[str, typer.Argument(metavar="ID", help="The new account's id.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    plan: Annotated[str | None, typer.Option(help="Plan id from the rate card (default: its default plan).")] = None,
) -> None:
    """Open an account (signup credits and the first allowance are granted per plan)."""
    run(_accounts_open(account_id, name, plan))


async def _accounts_open(account_id: str, name: str | None, plan: str | None) -> None:
    async with open_ledger() as ledger:
        await ledger.execute(c.OpenAccount(account_id=account_id, name=name or account_id, plan=plan))
        b = await ledger.balance(account_id, recent=0)
    typer.echo(f"opened {account_id} on plan {b.plan}: balance {format_credits(b.balance_ucr)} credits")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="operator (all accounts), or admin|member|read with --account.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    account: Annotated[str | None, typer.Option(help="The account an admin/member/read key belongs to.")] = None,
    env: Annotated[str, typer.Option(help="Shown in the key (cl_<env>_...): live or test.")] = "live",
) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    if env not in ("live", "test"):
        fail("--env must be live or test")
    if (role == "operator") != (account is None):
        fail("an operator key takes no --account; admin, member and read keys need one")
    if role not in ("operator", "admin", "member", "read"):
        fail(f"unknown role {role!r}: use operator, admin, member or read")
    typer.echo(run(_keys_create(role, name, account, env)))


async def _keys_create(role: str, name: str, account: str | None, env: str) -> str:
    if account is None:
        async with open_engine() as engine:
            key, _ = await create_operator_key(engine, name, env=env)
        typer.echo(f"operator key {key.prefix} created; it is shown once:")
        return key.key
    async with open_ledger() as ledger:
        await ledger.account(account)
        new, info = await create_account_key(ledger, account, role, name, env=env)  # type: ignore[arg-type]
    assert new is not None
    typer.echo(f"{info.role} key {info.prefix} for {account} created; it is shown once:")
    return new.key


@keys_app.command("list")
def keys_list(account: Annotated[str | None, typer.Option(help="Whose keys; omitted: the operator keys.")] = None,
              ) -> None:
    """List an account's keys, or the operator keys (prefixes only; secrets are never stored)."""
    run(_keys_list(account))


async def _keys_list(account: str | None) -> None:
    if account is None:
        async with open_engine() as engine:
            keys = await list_keys(engine, None)
    else:
        async with open_ledger() as ledger:
            await ledger.account(account)
            keys = await list_keys(ledger.engine, account)
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.prefix}  {k.role:<6}  {state}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    account: Annotated[str | None, typer.Option(help="The key's account (checked); omitted: found by id.")] = None,
) -> None:
    """Revoke a key (operator or account key); requests with it get 401 from then on."""
    run(_keys_revoke(account, key_id))


async def _keys_revoke(account: str | None, key_id: str) -> None:
    if account is None:
        async with open_engine() as engine:
            info = await find_key(engine, key_id)
            if info.account_id is None:
                await revoke_operator_key(engine, key_id)
        account = info.account_id
    if account is not None:
        async with open_ledger() as ledger:
            await revoke_account_key(ledger, account, key_id)
    told = await _announce_revoked(key_id)
    typer.echo(f"revoked {key_id}" + ("" if told else
               "; running API processes refuse it within CREDITS_KEY_CACHE_S (Redis did not pass it on)"))


async def _announce_revoked(key_id: str) -> bool:
    """Tell running API processes at once (through Redis); ``False`` if Redis did not take it."""
    url = await asyncio.to_thread(running_redis_url, load_settings())
    if url is None:
        return True  # no REDIS_URL and no embedded Redis running: no API process to tell
    redis = Redis.from_url(url, socket_connect_timeout=1)
    try:
        return await announce(redis, key_id)
    finally:
        await redis.aclose()


@app.command()
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


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="Actor threads (default CREDITS_WORKER_THREADS).")]
    = None,
    relay: Annotated[bool, typer.Option(help="Also run the log relay (one is active at a time).")] = True,
) -> None:
    """Run a Dramatiq worker (and the relay) on BROKER_URL / REDIS_URL until SIGTERM or Ctrl-C."""
    from workers.runner import Background, background_tasks

    async def main() -> None:
        settings = load_settings()
        bg = Background(settings)
        try:
            bg.start_worker(threads)
            typer.echo(f"worker running ({threads or settings.worker_threads} threads"
                       f"{', relay' if relay else ''}); Ctrl-C to stop", err=True)
            stop = asyncio.Event()
            _until_signalled(stop)
            async with open_ledger(settings) as ledger, background_tasks(bg, ledger, relay=relay, scheduler=False):
                await stop.wait()
        finally:
            await asyncio.to_thread(bg.close)

    run(main())


@app.command()
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


@app.command()
def balance(account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")], demo: DemoOption = False) -> None:
    """Show an account's exact balance, by source, with its allowance and reset date."""
    run(_balance(account_id, demo))


async def _balance(account_id: str, demo: bool) -> None:
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        b = await ledger.balance(account_id, recent=0)
    render.console().print(render.balance_table(b))


@app.command()
def history(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")],
    limit: Annotated[int, typer.Option(help="Entries per page (1-500).")] = 20,
    offset: Annotated[int, typer.Option(help="Entries to skip, newest first.")] = 0,
    demo: DemoOption = False,
) -> None:
    """Show an account's ledger entries, newest first."""
    run(_history(account_id, limit, offset, demo))


async def _history(account_id: str, limit: int, offset: int, demo: bool) -> None:
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        events = await ledger.entries(account_id, limit=limit, offset=offset)
        total = (await ledger.balance(account_id, recent=0)).version
    render.console().print(render.history_table(account_id, events, offset=offset, total=total))


@app.command()
def verify(
    accounts: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    demo: DemoOption = False,
) -> None:
    """Re-derive every account from its events and compare with the stored state; exit 1 on a mismatch."""
    clean = run(_verify(accounts or None, demo))
    if not clean:
        raise typer.Exit(1)


async def _verify(accounts: list[str] | None, demo: bool) -> bool:
    progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("accounts"),
                        TimeElapsedColumn(), console=render.console(stderr=True), transient=True)
    async with open_engine(await ledger_url(demo)) as engine:
        with progress:
            task = progress.add_task("verify", total=None)
            report = await verify_ledger(
                engine, accounts=accounts, progress=lambda done, total: progress.update(task, completed=done,
                                                                                         total=total))
    for mismatch in report.mismatches:
        typer.echo(str(mismatch))
    typer.echo(report.summary())
    return report.clean


@app.command()
def demo(
    run_id: Annotated[str | None, typer.Option(
        help="Names the demo's accounts (default: this month).",
    )] = None,
) -> None:
    """Simulate a month of three seed products (AI tokens, GPU hours, messaging), then verify.

    In a database of its own (CREDITS_DEMO_DATABASE, default the ledger's database name + _demo),
    created afresh on each run on the ledger's server, never the one `credits serve` uses; look at
    it with `--demo` (balance, history, verify)."""
    if not run(run_demo(run_id)):
        raise typer.Exit(1)
