"""``credits serve`` as a real process: on the embedded default end to end, and a SIGTERM that
lets every request in flight commit before the process exits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ledger.embedded import start_embedded_postgres, stop_embedded_postgres
from tests.ledger.api.live import free_port
from tests.ledger.cli.test_cli import query
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command, run_credits

pytestmark = pytest.mark.slow

#: ``credits serve`` exits 0 after a graceful stop on SIGTERM.
CLEAN_EXIT = (0,)


def start_serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*credits_command(), "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0]
            raise AssertionError(f"credits serve did not become ready:\n{out}")
        time.sleep(0.1)


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
