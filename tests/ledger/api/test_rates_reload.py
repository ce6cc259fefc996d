"""A running API picks up a rate card loaded by ``credits rates load`` in another process, without a
restart: within ``CREDITS_RATES_CHECK_S`` its ``GET /v1/rates`` shows the new version and new
charges are priced with it (and record it)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from ledger.cli.app import app as cli_app
from tests.cards import frozen_rate_card_text
from tests.ledger.api.conftest import bearer
from tests.ledger.api.live import live_server, operator_key_for

#: An operation only the new version has: charging it proves which card priced the charge.
PROBE = """
[operations.reload-probe]
description = "Only in the reloaded card"
unit = "units"
rates.units = { credits = "1.5" }
"""


def new_card_file(tmp_path: Path, version: str) -> Path:
    """The test suite's frozen card as a new version with one more operation."""
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', frozen_rate_card_text(), count=1, flags=re.M)
    path = tmp_path / "rates-new.toml"
    path.write_text(text + PROBE)
    return path


def test_a_running_api_prices_with_a_card_loaded_meanwhile(
        fresh_database_url: str, redis_url: str, tmp_path: Path) -> None:
    key = operator_key_for(fresh_database_url)
    with live_server(fresh_database_url, redis_url, rates_check_s=0.2) as base, \
            httpx.Client(base_url=base, headers=bearer(key), timeout=10) as http:
        old = http.get("/v1/rates").json()["version"]
        r = http.post("/v1/accounts", json={"id": "reload", "name": "Reload", "plan": "team"})
        assert r.status_code == 201, r.text
        r = http.post("/v1/accounts/reload/grants", json={"amount": "100", "source": "purchase", "reason": "t"})
        assert r.status_code == 201, r.text
        probe = {"operation": "reload-probe", "quantity": 2}
        assert http.post("/v1/accounts/reload/charges", json=probe).status_code == 422

        # Another process loads a new version (the server is not told).
        new = f"{old}-reload"
        loaded = CliRunner().invoke(cli_app, ["rates", "load", str(new_card_file(tmp_path, new))], env={
            "DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused"),
            "CREDITS_RATES_CHECK_S": "0.2"})
        assert loaded.exit_code == 0, loaded.output
        assert (f"rates: version {new} added" in loaded.stdout
                and "running API and worker processes price new usage with it within 0.2 s" in loaded.stdout)

        # The server's follower looks every 0.2 s; the deadline is only there so a broken one fails.
        deadline = time.monotonic() + 30
        while http.get("/v1/rates").json()["version"] != new:
            assert time.monotonic() < deadline, "the running server still shows the old rate card"
            time.sleep(0.05)
        r = http.post("/v1/accounts/reload/charges", json=probe)
        assert r.status_code == 201, r.text
        charge = r.json()
        assert (charge["rate_card_version"], charge["amount_ucr"]) == (new, 3_000_000), charge
        packs = http.get("/v1/packs").json()
        assert packs["rate_card_version"] == new, packs
