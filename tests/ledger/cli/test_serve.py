"""``credits serve`` as a real process: on the embedded default end to end, and a SIGTERM that
lets every request in flight commit before the process exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ledger.embedded import start_embedded_postgres, stop_embedded_postgres
from tests.ledger.api.live import free_port, wait_until_ready
from tests.ledger.cli.test_cli import query
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command, run_credits

pytestmark = pytest.mark.slow

#: ``credits serve`` exits 0 after a graceful stop on SIGTERM.
CLEAN_EXIT = (0,)


def start_serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*credits_command(), "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_ready(proc, port, output=lambda: proc.communicate()[0])
    return proc


def embedded_redis_pid(data_dir: Path) -> int:
    registry = data_dir / "redis" / "redis.db.settings"
    return int(Path(json.loads(registry.read_text())["pidfile"]).read_text().strip())


def alive(pid: int, wait_s: float = 10.0) -> bool:  # float-ok: a duration
    """Whether ``pid`` still runs after ``wait_s`` (a zombie waiting to be reaped counts as gone)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_serve_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "credits"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CREDITS_DATA_DIR"] = str(data_dir)
    port = free_port()
    redis_pid: int | None = None
    try:
        proc = start_serve(env, port)
        try:
            created = run_credits("keys", "create", "--role", "operator", "--name", "t", data_dir=data_dir,
                                  timeout=120)
            assert created.returncode == 0, created.stdout + created.stderr
            h = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
            base = f"http://127.0.0.1:{port}"
            assert httpx.post(f"{base}/v1/accounts", headers=h, json={"id": "e2e", "name": "e2e", "plan": "pro"},
                              timeout=10).status_code == 201
            r = httpx.post(f"{base}/v1/accounts/e2e/charges", headers=h, timeout=10,
                           json={"operation": "email", "quantity": 10})
            assert r.status_code == 201, r.text
            b = httpx.get(f"{base}/v1/accounts/e2e/balance", headers=h, timeout=10).json()
            redis_pid = embedded_redis_pid(data_dir)
            assert b["balance_ucr"] == r.json()["balance_after_ucr"]
        finally:
            out = stop(proc)
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
        # The embedded Redis the server started went with it (no orphan per run).
        assert redis_pid is not None and not alive(redis_pid)
    finally:
        if (data_dir / "pg").exists():
            start_embedded_postgres(data_dir)
            stop_embedded_postgres(data_dir)


def test_sigterm_lets_requests_in_flight_commit(fresh_database_url: str, redis_url: str) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=fresh_database_url, REDIS_URL=redis_url,
               # A long batch window keeps commands waiting in the writer when the signal lands.
               CREDITS_BATCH_WINDOW_MS="300", CREDITS_BROKER_NAMESPACE=f"credits-test-{port}")
    key = run_credits_env(env, "keys", "create", "--role", "operator", "--name", "t")
    proc = start_serve(env, port)
    base, h = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{base}/v1/accounts", headers=h, json={"id": "busy", "name": "busy", "plan": "team"},
                      timeout=10).status_code == 201

    async def fire() -> list[int]:
        async with httpx.AsyncClient(base_url=base, headers=h, timeout=30) as client:
            async def one(i: int) -> int:
                r = await client.post("/v1/accounts/busy/charges", json={"operation": "email", "quantity": 1},
                                      headers={"Idempotency-Key": f"c{i}"})
                return r.status_code

            tasks = [asyncio.create_task(one(i)) for i in range(20)]
            await asyncio.sleep(0.15)  # all sent, none committed yet (the window is 300 ms)
            proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    statuses = asyncio.run(fire())
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode in CLEAN_EXIT, out
    assert "Traceback" not in out, out
    assert statuses == [201] * 20, statuses
    assert query(fresh_database_url, "SELECT count(*) FROM events WHERE account_id = 'busy'"
                                     " AND type = 'UsageMetered'") == [(20,)]


def run_credits_env(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*credits_command(), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its API processes), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and "resource_tracker" not in _cmdline(int(entry)):
                found.append(int(entry))
    return sorted(found)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def sockets_on(port: int) -> dict[int, str]:
    """Socket inode -> TCP state ("LISTEN", "ESTABLISHED", ...) of each IPv4 socket on local port ``port``."""
    names = {"0A": "LISTEN", "01": "ESTABLISHED"}
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            out[int(fields[9])] = names.get(fields[3], fields[3])
    return out


def inodes_of(pid: int) -> set[int]:
    """The socket inodes ``pid`` holds open."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def connections_per_process(port: int, pids: list[int], n: int = 64) -> dict[int, int]:
    """Open ``n`` keep-alive connections at once, make one request on each, and count which process holds each."""

    async def run() -> dict[int, int]:
        async def one() -> asyncio.StreamWriter:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            return writer

        writers = await asyncio.gather(*(one() for _ in range(n)))
        try:
            states = sockets_on(port)
            return {pid: sum(1 for i in inodes_of(pid) if states.get(i) == "ESTABLISHED") for pid in pids}
        finally:
            for w in writers:
                w.close()

    return asyncio.run(run())


def start_workers(env: dict[str, str], port: int, workers: int) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen([*credits_command(), "serve", "--port", str(port), "--workers", str(workers),
                             "--api-only", "--log-level", "warning"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while True:
        pids = children(proc.pid)
        states = sockets_on(port)
        # Ready when every process has started its app and accepts on its own socket.
        if len(pids) == workers and all(any(states.get(i) == "LISTEN" for i in inodes_of(p)) for p in pids):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return proc, pids
            except httpx.TransportError:
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"credits serve --workers {workers} did not start:\n{proc.communicate()[0]}")
        time.sleep(0.2)


def test_each_api_process_accepts_on_its_own_socket(fresh_database_url: str, redis_url: str) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=fresh_database_url, REDIS_URL=redis_url)
    proc, pids = start_workers(env, port, 2)
    try:
        states = sockets_on(port)
        listening = [{i for i in inodes_of(p) if states.get(i) == "LISTEN"} for p in pids]
        # One socket each, not one socket shared: the kernel, not a race between processes,
        # decides which process takes a connection.
        assert all(len(s) == 1 for s in listening) and listening[0] != listening[1], listening
        per_process = connections_per_process(port, pids)
        assert sum(per_process.values()) == 64, per_process
        assert min(per_process.values()) > 0, per_process
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


def test_an_api_process_that_dies_is_replaced(fresh_database_url: str, redis_url: str) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=fresh_database_url, REDIS_URL=redis_url)
    proc, pids = start_workers(env, port, 2)
    try:
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            now = children(proc.pid)
            states = sockets_on(port)
            if (len(now) == 2 and pids[0] not in now
                    and all(any(states.get(i) == "LISTEN" for i in inodes_of(p)) for p in now)):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "the dead process was not replaced"
            time.sleep(0.2)
        # Connections the kernel hands to the replacement's socket are answered too. On a busy
        # machine the replacement may still be starting (its connections wait in its backlog) or
        # be replaced again: measure again, with the processes there are then, until it serves.
        while True:
            now = children(proc.pid)
            per_process = connections_per_process(port, now)
            if len(now) == 2 and sum(per_process.values()) == 64 and min(per_process.values()) > 0:
                break
            assert time.monotonic() < deadline + 60 and proc.poll() is None, per_process
            time.sleep(0.5)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out


def test_workers_refuse_a_port_in_use(fresh_database_url: str, redis_url: str) -> None:
    env = dict(os.environ, DATABASE_URL=fresh_database_url, REDIS_URL=redis_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*credits_command(), "serve", "--port", str(port), "--workers", "2", "--api-only"],
                              env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr


def test_api_processes_stop_when_the_supervisor_is_killed(fresh_database_url: str, redis_url: str) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=fresh_database_url, REDIS_URL=redis_url)
    proc, pids = start_workers(env, port, 2)
    try:
        proc.kill()  # SIGKILL: the supervisor cannot pass anything on
        proc.wait(timeout=10)
        # Each API process gets a SIGTERM from the kernel and stops gracefully, freeing the port.
        assert not any(alive(pid, wait_s=20) for pid in pids), "API processes outlived their supervisor"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()
