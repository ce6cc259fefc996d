"""``credits demo`` end to end on the embedded default: no DATABASE_URL, nothing installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.embedded import start_embedded_postgres, stop_embedded_postgres

REPO_ROOT = Path(__file__).resolve().parents[3]


def credits_command() -> list[str]:
    """The installed ``credits`` script beside this interpreter, else ``python -m ledger.cli``."""
    script = Path(sys.executable).with_name("credits")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def run_credits(*args: str, data_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CREDITS_DATA_DIR"] = str(data_dir)
    return subprocess.run([*credits_command(), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.slow
def test_demo_then_verify_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "credits"
    try:
        began = time.monotonic()
        demo = run_credits("demo", data_dir=data_dir, timeout=300)
        took = time.monotonic() - began
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Traceback" not in demo.stderr
        summary = demo.stdout.strip().splitlines()[-1]
        assert summary.startswith("verify: 3 accounts, ") and summary.endswith(" events, clean"), demo.stdout
        assert re.search(r"commands: \d+ events appended, 0 replayed .*, 0 refused;", demo.stdout), demo.stdout
        for product in ("AI tokens", "GPU hours", "Messaging"):
            assert product in demo.stdout
        assert took < 120, f"the demo took {took:.0f} s"

        pid = postmaster_pid(data_dir)
        # The demo's month is in a database of its own on the same server.
        verify = run_credits("verify", "--demo", data_dir=data_dir, timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stdout.strip().splitlines()[-1] == summary
        assert postmaster_pid(data_dir) == pid  # the server the demo started, reused
    finally:
        # The server outlives the commands by design; this process adopts it only to stop it.
        if (data_dir / "pg").exists():
            start_embedded_postgres(data_dir)
            stop_embedded_postgres(data_dir)
    assert not (data_dir / "pg" / "postmaster.pid").exists()
