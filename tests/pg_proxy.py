"""A TCP proxy in front of PostgreSQL that a test can cut and restore: a real outage for one
engine (its connections reset, new ones refused) while the server itself stays up for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from sqlalchemy.engine import make_url

from ledger.clock import Clock
from ledger.db import make_engine
from ledger.rates import RateCard
from ledger.service import Ledger


class PgProxy:
    """Forwards ``127.0.0.1:<port>`` to the server of ``url``; ``cut()`` is the outage."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        query = dict(parsed.query)
        socket_dir = query.pop("host", None)  # a unix-socket URL (the embedded server)
        if isinstance(socket_dir, tuple):
            socket_dir = socket_dir[0]
        self.socket_path = f"{socket_dir}/.s.PGSQL.{parsed.port or 5432}" if socket_dir else None
        self.target = (parsed.host or "127.0.0.1", parsed.port or 5432)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = parsed.set(host="127.0.0.1", port=self.port, query=query).render_as_string(hide_password=False)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Accept connections (again, after ``cut``)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    @property
    def up(self) -> bool:
        return self._server is not None

    async def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if self.socket_path is not None:
                server_r, server_w = await asyncio.open_unix_connection(self.socket_path)
            else:
                server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))
        self._writers -= {client_w, server_w}


@contextlib.asynccontextmanager
async def ledger_behind_proxy(url: str, clock: Clock, card: RateCard) -> AsyncIterator[tuple[Ledger, PgProxy]]:
    """A started ledger whose only way to the database at ``url`` is a ``PgProxy``."""
    proxy = PgProxy(url)
    await proxy.start()
    engine = make_engine(proxy.url, pool_size=4)
    service = Ledger(engine, clock, card)
    await service.start()
    try:
        yield service, proxy
    finally:
        if not proxy.up:
            await proxy.start()
        await service.stop()
        await engine.dispose()
        await proxy.cut()
