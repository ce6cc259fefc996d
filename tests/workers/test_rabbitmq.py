"""The worker path once on RabbitMQ (``BROKER_URL=amqp://...``) instead of Redis."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.service import Ledger
from ledger.settings import Settings
from tests.workers.conftest import drain
from workers.commands import dump
from workers.runner import Background

AMQP = os.environ.get("BROKER_URL_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")


def rabbit_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not rabbit_reachable(), reason="no RabbitMQ on 127.0.0.1:5672")
async def test_charges_and_alerts_through_rabbitmq(settings: Settings, wledger: Ledger, clock: ManualClock) -> None:
    bg = Background(settings.model_copy(update={"broker_url": AMQP}), clock=clock)
    try:
        await wledger.execute(c.OpenAccount(account_id="rabbit", name="r", plan="free"))
        await wledger.execute(c.SetBudget(account_id="rabbit", monthly_limit_ucr=100_000))
        await wledger.execute(c.StartDeployment(account_id="rabbit", deployment_id="d", instance_type="cpu-s"))
        clock.advance(timedelta(hours=2, minutes=1))
        batch = [dump(c.ChargeDeploymentHour(account_id="rabbit", deployment_id="d", hour_index=n,
                                             idempotency_key=f"deployment:d:hour:{n}")) for n in (1, 2)]
        bg.actors.execute_commands.send(batch)
        bg.actors.execute_commands.send(batch)  # delivered twice: charged once
        bg.start_worker(threads=2)
        drain(bg)
        bg.actors.check_alerts.send("rabbit", None)
        drain(bg)
        assert (await wledger.deployments("rabbit"))[0].hours_charged == 3
        kinds = sorted(e.kind for _, e in await wledger.notifications("rabbit"))  # type: ignore[union-attr]
        assert "budget" in kinds
    finally:
        bg.close()
