"""Rebuild equality: whatever commands ran, and however the log was cut into spans while they ran,
the incrementally built read models equal a rebuild from position 0, row for row.

Hypothesis draws command sequences over a few fresh accounts (metered and gated usage with
attributions, grants, purchases, refunds, reservations reserved, settled, released and expired,
deployments started, charged by the hour, paused, resumed and stopped, the clock moving on), and
between them folds one projector a span of a drawn size. The examples share the test's database
(fresh accounts each), so every example also folds on top of what the earlier ones left.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import LedgerError
from ledger.events import Attribution, CreditsPurchased, CreditsReserved, GrantSource
from ledger.service import Ledger
from projections.catalogue import PROJECTORS
from projections.rebuild import differences, rebuild
from projections.runner import project_once
from tests.projections.conftest import OpenAccount
from tests.projections.proof import checkpoints, fold_to_end, tables

UCR = 1_000_000

_names = st.sampled_from(["a", "b", "c, d", "é\"q'"])
attributions = st.builds(
    Attribution, member=st.none() | _names, agent=st.none() | _names, flow=st.none() | _names,
    run=st.none() | st.sampled_from(["r1", "r2"]), node=st.none() | st.sampled_from(["n1", "n2"]),
    deployment=st.none() | st.sampled_from(["dep-x"]), execution=st.none() | st.sampled_from(["x1", "x2", "x3"]))

#: (operation, quantities) of a use.
uses = st.one_of(
    st.builds(lambda i, o: ("gpt-4o", {"input_tokens": i, "output_tokens": o}),
              st.integers(0, 3_000_000), st.integers(0, 500_000)),
    st.builds(lambda n: ("email", {"messages": n}), st.integers(1, 50)),
    st.builds(lambda n: ("training_h100_per_minute", {"minutes": n}), st.integers(1, 120)),
    st.builds(lambda n: ("voice_minute", {"seconds": n}), st.integers(1, 1800)),
)

STEPS = ("meter", "meter", "charge", "grant", "purchase", "refund", "reserve", "settle", "release", "start",
         "hour", "hour", "pause", "resume", "stop", "advance", "advance", "expire", "burst", "project", "project")

SOURCES: list[GrantSource] = ["promotion", "refund", "purchase"]


async def _try(ledger: Ledger, command: c.Command) -> list[object]:
    """Run a command; a refusal (402, 409, 422, ...) records nothing and is part of the game."""
    try:
        return list((await ledger.execute(command)).events)
    except LedgerError:
        return []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
async def test_incremental_tables_equal_a_rebuild_from_position_zero(
    data: st.DataObject, engine: AsyncEngine, ledger: Ledger, clock: ManualClock, open_account: OpenAccount,
) -> None:
    accounts = [await open_account(credits_ucr=500 * UCR), await open_account(),
                await open_account(plan="pro", credits_ucr=5 * UCR)]
    account = st.sampled_from(accounts)
    reservations: dict[str, list[UUID]] = {a: [] for a in accounts}
    purchases: dict[str, list[UUID]] = {a: [] for a in accounts}
    deployments: dict[str, list[str]] = {a: [] for a in accounts}
    hours: dict[str, int] = {}

    for _ in range(data.draw(st.integers(5, 40), label="steps")):
        step = data.draw(st.sampled_from(STEPS), label="step")
        a = data.draw(account, label="account")
        if step in ("meter", "charge"):
            operation, quantities = data.draw(uses, label="use")
            who = data.draw(attributions, label="attribution")
            if step == "meter":
                ago = data.draw(st.integers(0, 72 * 60), label="minutes ago")
                await _try(ledger, c.Meter(account_id=a, operation=operation, quantities=quantities,
                                           attribution=who, occurred_at=clock.now() - timedelta(minutes=ago)))
            else:
                await _try(ledger, c.Charge(account_id=a, operation=operation, quantities=quantities,
                                            attribution=who))
        elif step == "grant":
            source = data.draw(st.sampled_from(SOURCES), label="source")
            expires = data.draw(st.none() | st.integers(1, 48), label="expires in hours")
            await _try(ledger, c.GrantCredits(
                account_id=a, amount_ucr=data.draw(st.integers(1, 50 * UCR), label="amount"), source=source,
                reason="proof", expires_at=None if expires is None else clock.now() + timedelta(hours=expires)))
        elif step == "purchase":
            pack, cents = data.draw(st.sampled_from([("starter", 1000), ("builder", 5000)]), label="pack")
            for e in await _try(ledger, c.RecordPurchase(account_id=a, kind="pack", pack_id=pack, cents_paid=cents,
                                                         stripe_payment_intent=f"pi_{secrets.token_hex(4)}")):
                if isinstance(e, CreditsPurchased):
                    purchases[a].append(e.event_id)
        elif step == "refund":
            clawback: bool = data.draw(st.booleans(), label="clawback")
            if purchases[a] and clawback:
                await _try(ledger, c.IssueRefund(account_id=a, direction="clawback",
                                                 purchase_id=data.draw(st.sampled_from(purchases[a])),
                                                 amount_ucr=data.draw(st.integers(1, 20 * UCR)), reason="stripe"))
            else:
                await _try(ledger, c.IssueRefund(account_id=a, direction="credit",
                                                 amount_ucr=data.draw(st.integers(1, 5 * UCR)), reason="failed run"))
        elif step == "reserve":
            for e in await _try(ledger, c.Reserve(account_id=a, operation="training_h100_per_minute",
                                                  quantity=data.draw(st.integers(10, 300), label="minutes"),
                                                  ttl_s=data.draw(st.integers(600, 7200), label="ttl"))):
                if isinstance(e, CreditsReserved):
                    reservations[a].append(e.reservation_id)
        elif step in ("settle", "release"):
            if reservations[a]:
                rid = data.draw(st.sampled_from(reservations[a]), label="reservation")
                await _try(ledger, c.Settle(account_id=a, reservation_id=rid,
                                            quantity=data.draw(st.integers(0, 400), label="used"),
                                            attribution=data.draw(attributions)) if step == "settle"
                           else c.Release(account_id=a, reservation_id=rid))
        elif step == "start":
            d = f"dep-{len(deployments[a])}"
            if await _try(ledger, c.StartDeployment(account_id=a, deployment_id=d,
                                                    instance_type=data.draw(st.sampled_from(["cpu-s", "gpu-s"])))):
                deployments[a].append(d)
                hours[f"{a}/{d}"] = 1
        elif step in ("hour", "pause", "resume", "stop"):
            running = [(b, d) for b, ds in deployments.items() for d in ds]
            if running:
                a, d = data.draw(st.sampled_from(running), label="deployment")
                if step == "hour":
                    # The next hour may not be due, or the deployment not running: refused, recorded nothing.
                    if await _try(ledger, c.ChargeDeploymentHour(account_id=a, deployment_id=d,
                                                                 hour_index=hours[f"{a}/{d}"])):
                        hours[f"{a}/{d}"] += 1
                else:
                    cmd = {"pause": c.PauseDeployment, "resume": c.ResumeDeployment, "stop": c.StopDeployment}[step]
                    await _try(ledger, cmd(account_id=a, deployment_id=d))
                    view = await ledger.deployments(a, d)
                    hours[f"{a}/{d}"] = view[0].hours_charged if view else hours[f"{a}/{d}"]
        elif step == "advance":
            clock.advance(timedelta(minutes=data.draw(st.integers(1, 150), label="minutes")))
        elif step == "expire":
            await _try(ledger, c.ExpireReservations(account_id=a))
            await _try(ledger, c.ExpireGrants(account_id=a))
        elif step == "burst":
            # Many at once through the group-commit writer: several events in one transaction.
            n = data.draw(st.integers(2, 30), label="burst")
            await ledger.execute_many([c.Meter(account_id=data.draw(account), operation="email", quantity=1 + i % 3,
                                               attribution=Attribution(agent=f"burst-{i % 4}"))
                                       for i in range(n)])
        else:
            p = data.draw(st.sampled_from(PROJECTORS), label="projector")
            await project_once(engine, p, batch=data.draw(st.integers(1, 60), label="span"))

    await fold_to_end(engine, PROJECTORS, batches=data.draw(st.lists(st.integers(1, 80), min_size=1, max_size=4),
                                                           label="closing spans"))
    at = await checkpoints(engine)
    for p in PROJECTORS:
        assert await differences(engine, p) == []
    incremental = await tables(engine)
    for p in PROJECTORS:
        done = await rebuild(engine, p, batch=data.draw(st.integers(1, 500), label="rebuild span"))
        assert done.at == at[p.name]
    assert await tables(engine) == incremental
    async with engine.connect() as conn:
        used = await conn.scalar(text("SELECT count(*) FROM events WHERE type = 'UsageMetered'"))
    assert len(incremental["proj_executions"]) == used
