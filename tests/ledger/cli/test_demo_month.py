"""The demo's month without a database: the script is a function of the run id (a re-run issues
the same commands, so their keys replay), and every command carries an idempotency key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.cli.demo_month import Month, month_start
from ledger.rates import sample_rate_card

START = datetime(2026, 2, 1, tzinfo=UTC)


def issued(run_id: str) -> list[dict[str, Any]]:
    """Every command the month's script issues, hour by hour (with nothing remembered from the ledger)."""
    month = Month(sample_rate_card(), START, run_id)
    month.newsletter_emails = 5_000
    return [cmd.model_dump(mode="json") | {"type": type(cmd).__name__}
            for h in range(month.hours + 1) for cmd in month.scheduled(h) + month.usage(h)]


def test_the_month_starts_at_midnight_on_the_first_and_has_its_days() -> None:
    assert month_start(datetime(2026, 2, 14, 15, 30, tzinfo=UTC)) == START
    assert Month(sample_rate_card(), START, "x").hours == 28 * 24


def test_the_same_run_id_issues_the_same_commands() -> None:
    first = issued("r1")
    assert first == issued("r1")
    assert [c for c in issued("r2") if c["type"] == "Meter"] != [c for c in first if c["type"] == "Meter"]


def test_every_command_carries_an_idempotency_key_once_per_account() -> None:
    commands = issued("r1")
    assert commands and all(c["idempotency_key"] for c in commands)
    keys = [(c["account_id"], c["idempotency_key"]) for c in commands]
    assert len(keys) == len(set(keys))
