"""The domain does no I/O: importing it loads no database, broker or HTTP library.

``decide``, the batch planner and the modules they stand on (state, events, rates, money,
grants, the alert rules, commands, idempotency, the row mapping) are pure functions of their inputs; what they read from
PostgreSQL or Redis is loaded at the edge (the store, ``ledger.alert_views``) and handed in. Each is imported in a fresh
interpreter, so a transitive import counts.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import ledger.decide

#: Libraries that talk to a database, a broker or the network (or serve HTTP).
IO_LIBRARIES = ("sqlalchemy", "asyncpg", "psycopg", "psycopg2", "redis", "httpx", "dramatiq", "fastapi",
                "starlette", "uvicorn", "aiohttp", "requests")

DOMAIN = ["ledger.decide", "ledger.state", "ledger.events", "ledger.rates", "ledger.money", "ledger.grants",
          "ledger.alerts", "ledger.commands", "ledger.clock", "ledger.errors", "ledger.planner",
          "ledger.idempotency", "ledger.rows", "ledger.views", "ledger.payments", "ledger.refill",
          "ledger.event_base", "ledger.payment_events", "ledger.deployment"]
if hasattr(ledger.decide, "__path__"):  # a package: each of its modules too
    DOMAIN += [m.name for m in pkgutil.iter_modules(ledger.decide.__path__, "ledger.decide.")]


def io_imported_by(module: str) -> list[str]:
    code = ("import importlib, json, sys; importlib.import_module(sys.argv[1]);"
            " print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[2:])))")
    out = subprocess.run([sys.executable, "-c", code, module, *IO_LIBRARIES], capture_output=True, text=True,
                         check=True)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("module", DOMAIN)
def test_domain_module_imports_no_io_library(module: str) -> None:
    assert io_imported_by(module) == [], f"{module} imports an I/O library"


def test_the_check_sees_an_io_import() -> None:
    """The check itself works: an edge module is caught."""
    assert "sqlalchemy" in {m.split(".")[0] for m in io_imported_by("ledger.alert_views")}
