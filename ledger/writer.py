"""The group-commit writer: commands arriving together share one transaction.

Callers ``submit`` a command and await its result. A few loops take whatever has queued up
(waiting ``window`` for company after the first arrival), hand the batch to
``EventStore.run_batch`` and resolve each caller. Throughput is bounded by batches per second,
not by one fsync per command. If a batch fails as a whole (a database error, not a refused
command), its commands are retried one by one so a poisoned command fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger import commands as c
from ledger.db import unreachable
from ledger.errors import CommandFailed, LedgerError, OutcomeUnknown, Unavailable
from ledger.store import EventStore, Outcome, Result

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    command: c.Command
    future: asyncio.Future[Result]


#: What callers queue: one command, or the commands of one ``submit_many`` call, kept together
#: so they commit in one transaction and in the order given.
_Group = list[_Pending]


class GroupCommitWriter:
    """Batches concurrent commands into shared transactions."""

    def __init__(self, store: EventStore, *, window_s: float = 0.0, max_batch: int = 512,  # float-ok
                 concurrency: int = 2, parallel_at: int = 16) -> None:
        self.store = store
        self.window_s = window_s
        self.max_batch = max_batch
        self.concurrency = concurrency
        #: While a batch is in flight, another starts only once this many commands wait. Below it,
        #: they wait for the batch in flight and then go together: at moderate load two half-empty
        #: batches in parallel cost twice the per-batch work (round trips, a COMMIT, a lock each)
        #: of one, and that work, not the commands, is most of a batch of one or two.
        self.parallel_at = parallel_at
        self._groups: deque[_Group] = deque()
        self._queued = 0
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._loops: list[asyncio.Task[None]] = []
        #: Sizes of the latest batches committed, for benchmarks (bounded: the writer runs for months).
        self.batch_sizes: list[int] = []
        #: Called with each committed batch's size (metrics).
        self.on_commit: list[Callable[[int], None]] = []

    async def start(self) -> None:
        if not self._loops:
            self._loops = [asyncio.create_task(self._loop(), name=f"group-commit-{i}")
                           for i in range(self.concurrency)]

    async def stop(self) -> None:
        """Finish every command already submitted, then stop the loops."""
        while self._groups or self._in_flight:
            self._idle.clear()
            await self._idle.wait()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []

    async def __aenter__(self) -> GroupCommitWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def submit(self, command: c.Command) -> Outcome:
        """Run one command; its events, or the ``LedgerError`` that refused it."""
        result = await self.submit_nowait(command)
        if isinstance(result, LedgerError):
            raise result
        return result

    def submit_nowait(self, command: c.Command) -> asyncio.Future[Result]:
        """Queue one command; the future resolves to its result (errors as values)."""
        return self._enqueue([command])[0]

    async def submit_many(self, commands: Sequence[c.Command]) -> list[Result]:
        """Run several commands in one transaction, in the order given; results in order."""
        if not commands:
            return []
        return list(await asyncio.gather(*self._enqueue(commands)))

    def _enqueue(self, commands: Sequence[c.Command]) -> list[asyncio.Future[Result]]:
        if not self._loops:
            raise RuntimeError("the writer is not started")
        loop = asyncio.get_running_loop()
        group = [_Pending(cmd, loop.create_future()) for cmd in commands]
        self._groups.append(group)
        self._queued += len(group)
        self._arrived.set()
        return [p.future for p in group]

    async def _take(self) -> list[_Pending]:
        """Wait for work, then take whole groups up to ``max_batch`` commands (at least one group)."""
        while not self._groups or (self._in_flight and self._queued < self.parallel_at):
            self._arrived.clear()
            await self._arrived.wait()  # set by an arrival, and by a batch that finished
        if self.window_s > 0 and len(self._groups) == 1:
            await asyncio.sleep(self.window_s)  # company for a lone arrival
        batch: list[_Pending] = []
        # A group is never split, so one larger than max_batch commits alone.
        while self._groups and (not batch or len(batch) + len(self._groups[0]) <= self.max_batch):
            batch += self._groups.popleft()
        self._queued -= len(batch)
        self._in_flight += 1
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._take()
            if not batch:  # another loop took the groups while this one waited for company
                self._in_flight -= 1
                if not self._in_flight and not self._groups:
                    self._idle.set()
                continue
            try:
                await self._commit(batch)
            finally:
                self._in_flight -= 1
                if not self._in_flight and not self._groups:
                    self._idle.set()
                self._arrived.set()  # commands held back for this batch may go now

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self.store.run_batch([p.command for p in batch])
        except OutcomeUnknown as exc:
            log.error("commit of a batch of %d failed in flight: %s", len(batch), exc)
            for p in batch:
                _resolve(p, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], _failure(batch[0].command, exc))
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
            for i, p in enumerate(batch):
                await self._commit([p])
                if isinstance(p.future.result(), Unavailable):
                    # The database is away, not one command poisoned: the rest would each wait
                    # for it in turn, and fail the same way.
                    for rest in batch[i + 1:]:
                        _resolve(rest, Unavailable(f"{type(rest.command).__name__} was not recorded: "
                                                   "the database is unreachable"))
                    return
            return
        if len(self.batch_sizes) >= 100_000:
            del self.batch_sizes[:50_000]
        self.batch_sizes.append(len(batch))
        for observe in self.on_commit:
            observe(len(batch))
        for p, r in zip(batch, results, strict=True):
            _resolve(p, r)


def _failure(command: c.Command, exc: Exception) -> LedgerError:
    """What a command that failed alone (not refused by a rule) gets: ``Unavailable`` when the
    database could not be reached, else ``CommandFailed`` (a fault worth a log with its trace)."""
    name = type(command).__name__
    if unreachable(exc):
        log.warning("%s not recorded, the database is unreachable: %s: %s", name, type(exc).__name__, exc)
        return Unavailable(f"{name} was not recorded: the database is unreachable")
    log.error("command failed: %s", name, exc_info=exc)
    return CommandFailed(f"{name} was not recorded: {type(exc).__name__}")


def _resolve(p: _Pending, value: Result) -> None:
    if not p.future.done():
        p.future.set_result(value)
