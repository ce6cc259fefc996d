"""``credits demo --live`` as a real process: the month driven through the running API and the
Stripe stand-in ends with every episode told, ``verify`` clean and the dashboard answering; on the
embedded default with ``--until-done``, and on the machine's PostgreSQL kept serving until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ledger.cli.demo_live_month import EPISODES
from ledger.embedded import start_embedded_postgres, stop_embedded_postgres
from tests.conftest import admin_execute
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command, run_credits

pytestmark = pytest.mark.slow

LIVE = ("demo", "--live", "--port", "0", "--step-hours", "12")


def check_month(stdout: str) -> str:
    """The month's summary as printed: each episode happened, verify is clean; the dashboard's URL."""
    for episode in EPISODES:
        row = next((line for line in stdout.splitlines() if line.startswith(f"│ {episode} ")), None)
        assert row is not None, f"no row for {episode}:\n{stdout}"
        assert "did not happen" not in row, row
    assert re.search(r"^verify: 3 accounts, \d+ events, clean$", stdout, re.M), stdout
    found = re.search(r"^dashboard: (http://\S+/dashboard) \(HTTP 200\)$", stdout, re.M)
    assert found is not None, stdout
    return found.group(1)


def test_live_demo_until_done_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "credits"
    try:
        began = time.monotonic()
        done = run_credits(*LIVE, "--until-done", data_dir=data_dir, timeout=300)
        took = time.monotonic() - began
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        check_month(done.stdout)
        print(f"credits demo --live --until-done on the embedded default: {took:.0f} s")
    finally:
        # The embedded PostgreSQL outlives the command by design; adopted here only to stop it.
        if (data_dir / "pg").exists():
            start_embedded_postgres(data_dir)
            stop_embedded_postgres(data_dir)
    assert not (data_dir / "pg" / "postmaster.pid").exists()


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """``proc``'s output, line by line, read on a thread (a read never blocks the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_live_demo_serves_the_dashboard_until_ctrl_c() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("needs DATABASE_URL")
    name = f"demo_live_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CREDITS_DEMO_DATABASE": name}
    proc = subprocess.Popen([*credits_command(), *LIVE], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines, printed = lines_of(proc), ""
        deadline = time.monotonic() + 240
        # The key is printed alone on the line after the one that announces it.
        while not re.search(r"shown once\):\n(\S+)\n", printed):
            assert proc.poll() is None and time.monotonic() < deadline, printed
            try:
                printed += lines.get(timeout=1)
            except queue.Empty:
                continue
        key = re.search(r"shown once\):\n(\S+)\n", printed).group(1)  # type: ignore[union-attr]
        dashboard = check_month(printed)
        assert httpx.get(dashboard, timeout=10).status_code == 200
        account = re.search(r"admin key of (\S+) ", printed).group(1)  # type: ignore[union-attr]
        base = dashboard.removesuffix("/dashboard")
        # The key is ready: the account's balance, as the dashboard asks for it.
        balance = httpx.get(f"{base}/v1/accounts/{account}/balance", headers={"Authorization": f"Bearer {key}"},
                            timeout=10)
        assert balance.status_code == 200, balance.text
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)  # the reader's last lines
        while not lines.empty():
            printed += lines.get()
        assert "Traceback" not in printed, printed
    finally:
        if proc.poll() is None:
            proc.kill()
        asyncio.run(admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_port_in_use_is_one_error_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_credits("demo", "--live", "--port", str(port), data_dir=tmp_path / "credits", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use", done.stderr
    assert not (tmp_path / "credits" / "pg").exists()  # nothing was started


def test_ctrl_c_before_the_month_is_over_is_one_error() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("needs DATABASE_URL")
    name = f"demo_live_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CREDITS_DEMO_DATABASE": name}
    proc = subprocess.Popen([*credits_command(), *LIVE], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines, printed = lines_of(proc), ""
        deadline = time.monotonic() + 180
        while "auto-refill set" not in printed:  # the month has begun
            assert proc.poll() is None and time.monotonic() < deadline, printed
            with contextlib.suppress(queue.Empty):
                printed += lines.get(timeout=1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 1
        time.sleep(0.5)  # the reader's last lines
        while not lines.empty():
            printed += lines.get()
        assert printed.rstrip().endswith("error: stopped before the month was over"), printed
        assert "Traceback" not in printed, printed
    finally:
        if proc.poll() is None:
            proc.kill()
        asyncio.run(admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
