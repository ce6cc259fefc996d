"""``credits serve --workers N``: N API processes, each accepting on a listening socket of its own.

uvicorn's multi-worker mode hands one listening socket to every process, and whichever process
wakes first accepts every connection waiting. Keep-alive connections opened together (a proxy's
upstream pool, a load generator) then split unevenly and stay that way, so one process does
most of the work while the other idles (measured in docs/benchmarks.md). Here each process
gets its own socket, bound to the same port with ``SO_REUSEPORT``, and the kernel spreads new
connections over the sockets by a hash of their addresses (what nginx's ``reuseport`` and
gunicorn's ``--reuse-port`` do).

The parent binds every socket (so a port in use is one clear error, before any process starts)
and keeps them open, so connections that reach a process that died wait in its socket's queue
for the replacement instead of being refused. It restarts a process that dies, and on SIGTERM or
SIGINT asks every process to stop (each finishes its requests in flight) and waits for them. If
the parent itself is killed outright, the kernel sends each process a SIGTERM (Linux).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger("uvicorn.error")

APP = "ledger.api.app:create_app"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: uvicorn's own default: connections the kernel queues for a process before refusing more.
BACKLOG = 2048


#: The API's uvicorn settings beside the address and the log level.
OPTIONS: dict[str, Any] = {"factory": True, "timeout_graceful_shutdown": 30, "proxy_headers": False}


def uvicorn_config(host: str, port: int, log_level: str) -> uvicorn.Config:
    """The API's uvicorn settings, for one process or each of several."""
    return uvicorn.Config(APP, host=host, port=port, log_level=log_level, **OPTIONS)


def _address(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    """The address family and socket address to listen on for ``host:port``."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return family, address


def listening_sockets(host: str, port: int, n: int) -> list[socket.socket]:
    """``n`` sockets listening on ``host:port`` with ``SO_REUSEPORT`` (port 0: one port picked for all)."""
    family, address = _address(host, port)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            address = sock.getsockname()  # the port the first bind picked, if it was 0
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def port_is_free(host: str, port: int) -> None:
    """Raise ``OSError`` if something listens on ``host:port``: ``SO_REUSEPORT`` alone would share
    the port with another server of the same user instead of failing."""
    family, address = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def _stop_with_parent(parent: int) -> None:
    """Ask the kernel for a SIGTERM when the parent dies (Linux), so a supervisor killed outright
    (SIGKILL, OOM) leaves no API process behind holding the port."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to be stopped with the supervisor (errno %s)", ctypes.get_errno())
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_one(sock: socket.socket, host: str, port: int, log_level: str, parent: int) -> None:
    """One worker process: the API on ``sock`` until SIGTERM or SIGINT, then a graceful stop."""
    # uvicorn stops gracefully on the signal and then re-raises it: exit 0 instead of dying by it.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    _stop_with_parent(parent)
    uvicorn.Server(uvicorn_config(host, port, log_level)).run(sockets=[sock])


class Workers:
    """The supervisor: one process per socket, restarted if it dies, stopped on a signal."""

    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.host, self.log_level = host, log_level
        port_is_free(host, port)
        self.sockets = listening_sockets(host, port, workers)
        self.port: int = self.sockets[0].getsockname()[1]
        self._spawn = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self.processes: list[BaseProcess] = []

    def _start(self, sock: socket.socket) -> BaseProcess:
        process = self._spawn.Process(target=serve_one, name="credits-api",
                                      args=(sock, self.host, self.port, self.log_level, os.getpid()))
        process.start()
        return process

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until a signal (exit 0 once every process stopped cleanly) or a process that cannot start (1)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        status = 0
        try:
            self.processes = [self._start(sock) for sock in self.sockets]
            while not self._stop.is_set():
                wait([p.sentinel for p in self.processes], timeout=0.5)
                for i, process in enumerate(self.processes):
                    if process.is_alive() or self._stop.is_set():
                        continue
                    if process.exitcode == STARTUP_FAILURE:
                        # The app cannot start (bad settings, database unreachable): every restart
                        # would fail the same way.
                        log.error("API process %s failed to start; stopping", process.pid)
                        self._stop.set()
                        status = 1
                        break
                    log.warning("API process %s died (exit code %s); starting another", process.pid,
                                process.exitcode)
                    self.processes[i] = self._start(self.sockets[i])
        finally:
            for process in self.processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: it finishes its requests in flight, then exits 0
            for process in self.processes:
                process.join()
                if process.exitcode != 0:
                    status = 1
            for sock in self.sockets:
                sock.close()
        return status
