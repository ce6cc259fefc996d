"""Schemathesis against ``/openapi.json`` on a live server: no 5xx, and every response (status,
content type, headers, body) matches the published schema.

Requests carry an operator key, so generated calls reach the routes' logic rather than stopping
at 401; a seeded account makes the ``acct`` path examples land on real data.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledger.api.app import create_app
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import standin_settings
from tests.ledger.api.live import live_server, operator_key_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, stripe_standin: StripeStandIn) -> Iterator[tuple[str, str, str]]:
    with live_server(database_url, redis_url, **standin_settings(stripe_standin)) as base:
        key = operator_key_for(database_url)
        account = f"st-{secrets.token_hex(4)}"
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{base}/v1/accounts", json={"id": account, "name": "schemathesis", "plan": "team"},
                       headers=h)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{base}/v1/accounts/{account}/grants", headers=h,
                       json={"amount": "1000", "source": "purchase", "reason": "schemathesis"})
        assert r.status_code == 201, r.text
        yield base, key, account


# The document the live server publishes at /openapi.json, built without starting anything.
schema = schemathesis.openapi.from_dict(create_app().openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case: Any, live: tuple[str, str, str]) -> None:
    base, key, account = live
    if "account" in (case.path_parameters or {}) and secrets.randbelow(2):
        case.path_parameters["account"] = account
    case.call_and_validate(
        base_url=base, headers={"Authorization": f"Bearer {key}"},
        checks=[schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])
