"""The batch planner: given loaded state, when a batch of commands is planned, then results and a
write plan. Pure: no database; a fixed ``now``, the test suite's frozen card and ids 1, 2, 3...

1 credit = 1,000,000 µcr; an email costs 0.001 credits (``tests/data/rates.toml``), so 1,000
emails cost 1 credit.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

import ledger.planner
from ledger import commands as c
from ledger.chain import GENESIS, canonical_json
from ledger.clock import month_key
from ledger.errors import IdempotencyConflict, PaymentRequired
from ledger.events import UsageMetered, event_data
from ledger.grants import Grant
from ledger.idempotency import StoredKey
from ledger.planner import Loaded, NeedsCounters, Outcome, Plan, chain_hash, plan_batch
from ledger.state import AccountState, Budget
from tests.cards import frozen_rate_card

UCR = 1_000_000
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CARD = frozen_rate_card()
HEAD = bytes(range(32))


def _ids() -> Callable[[], UUID]:
    n = iter(range(1, 10_000))
    return lambda: UUID(int=next(n))


def _account(account_id: str = "a", *, credits_ucr: int = 10 * UCR, version: int = 7, **kw: object) -> AccountState:
    grant = Grant(UUID(int=10_000 + version), "purchase", credits_ucr, credits_ucr, None, NOW)
    return AccountState(account_id=account_id, exists=True, name=account_id, plan="free", version=version,
                        last_hash=HEAD, opened_at=NOW, grants={grant.grant_id: grant}, **kw)  # type: ignore[arg-type]


def _charge(account_id: str = "a", emails: int = 1000, key: str | None = None) -> c.Charge:
    return c.Charge(account_id=account_id, operation="email", quantity=emails, idempotency_key=key)


def _plan(commands: Sequence[c.Command], loaded: Loaded) -> Plan:
    plan = plan_batch(commands, loaded, NOW, CARD, new_id=_ids())
    assert isinstance(plan, Plan), plan
    return plan


def test_a_key_stored_by_an_earlier_batch_is_replayed_from_its_versions() -> None:
    cmd = _charge(key="k1")
    loaded = Loaded(states={"a": _account()}, keys={("a", "k1"): StoredKey(cmd.fingerprint(), 3, 4)})

    plan = _plan([cmd], loaded)

    assert plan.results == [None]  # read back after the commit
    assert plan.replays == {0: ("a", 3, 4)}
    assert plan.writes is None


def test_a_stored_key_with_another_request_is_a_conflict() -> None:
    loaded = Loaded(states={"a": _account()}, keys={("a", "k1"): StoredKey(_charge(emails=5).fingerprint(), 3, 4)})

    plan = _plan([_charge(key="k1")], loaded)

    assert isinstance(plan.results[0], IdempotencyConflict)
    assert plan.replays == {} and plan.writes is None


def test_a_key_twice_in_one_batch_records_once_and_replays_the_first_result() -> None:
    loaded = Loaded(states={"a": _account()})

    plan = _plan([_charge(key="k1"), _charge(key="k1"), _charge(emails=7, key="k1")], loaded)

    first, again, other = plan.results
    assert isinstance(first, Outcome) and not first.replayed and len(first.events) == 1
    assert again == Outcome(first.events, True)
    assert isinstance(other, IdempotencyConflict)
    assert plan.writes is not None
    assert [e for e, _, _, _ in plan.writes.events] == list(first.events)
    assert plan.writes.keys == [("a", "k1", _charge(key="k1").fingerprint(), 8, 8)]


def test_a_refused_command_leaves_its_neighbours_alone() -> None:
    loaded = Loaded(states={"a": _account(credits_ucr=3 * UCR), "b": _account("b")})

    plan = _plan([_charge(), _charge(emails=5000), _charge("b"), _charge()], loaded)

    ok1, refused, ok_b, ok2 = plan.results
    assert isinstance(refused, PaymentRequired)
    assert all(isinstance(r, Outcome) for r in (ok1, ok_b, ok2))
    assert plan.writes is not None
    # The refused command took no version and no credits: the next one follows the first.
    assert [(e.account_id, v) for e, v, _, _ in plan.writes.events] == [("a", 8), ("b", 8), ("a", 9)]
    assert plan.writes.states["a"].balance_ucr == 1 * UCR
    assert plan.writes.states["b"].balance_ucr == 9 * UCR


def test_the_hash_chain_continues_from_the_loaded_head() -> None:
    loaded = Loaded(states={"a": _account(version=7)})

    plan = _plan([_charge(), _charge()], loaded)

    assert plan.writes is not None
    prev, version = HEAD, 7
    for e, v, h, data_json in plan.writes.events:
        version += 1
        assert v == version and data_json == canonical_json(event_data(e))
        assert h == chain_hash(prev, v, e, data_json)
        prev = h
    after = plan.writes.states["a"]
    assert (after.version, after.last_hash) == (9, prev)


def test_a_new_account_chains_from_genesis() -> None:
    plan = _plan([c.OpenAccount(account_id="n", name="New")], Loaded())

    assert plan.writes is not None
    (e, v, h, data_json), *_ = plan.writes.events
    assert v == 1 and h == chain_hash(GENESIS, 1, e, data_json)


def test_counters_asked_for_are_loaded_and_the_batch_is_decided_again_from_the_loaded_state() -> None:
    gated = _account(budget=Budget(monthly_limit_ucr=5 * UCR, hard_stop=True), counters=None)
    loaded = Loaded(states={"a": gated, "b": _account("b")})
    batch = [_charge("b"), _charge(key="k1"), _charge(key="k1")]

    asked = plan_batch(batch, loaded, NOW, CARD, new_id=_ids())

    assert asked == NeedsCounters("a")
    assert loaded.states == {"a": gated, "b": _account("b")}  # planning changed nothing loaded

    loaded.states["a"] = replace(gated, counters={("account", "", month_key(NOW)): 3 * UCR})
    plan = _plan(batch, loaded)

    b_first, a_first, a_again = plan.results
    assert isinstance(b_first, Outcome) and isinstance(a_first, Outcome)
    assert a_again == Outcome(a_first.events, True)
    assert plan.writes is not None
    # Each command's effect once: one event per account, from the loaded versions and balances.
    assert [(e.account_id, v) for e, v, _, _ in plan.writes.events] == [("b", 8), ("a", 8)]
    assert all(isinstance(e, UsageMetered) for e, _, _, _ in plan.writes.events)
    assert plan.writes.states["a"].balance_ucr == 9 * UCR
    assert plan.writes.states["b"].balance_ucr == 9 * UCR
    assert len(plan.writes.keys) == 1


def test_a_gated_account_over_its_budget_is_refused_on_the_counters_it_asked_for() -> None:
    gated = _account(budget=Budget(monthly_limit_ucr=5 * UCR, hard_stop=True),
                     counters={("account", "", month_key(NOW)): 5 * UCR})

    plan = _plan([_charge()], Loaded(states={"a": gated}))

    assert isinstance(plan.results[0], PaymentRequired)
    assert plan.writes is None


@pytest.mark.parametrize("module", [ledger.planner])
def test_the_planner_does_no_io(module: object) -> None:
    """It imports neither a database driver nor anything of the store."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in {"sqlalchemy", "asyncpg", "psycopg", "redis"}
                or m.startswith("ledger.store")}
