"""Metered usage in batches: the one path shared by ``POST /v1/usage`` and the queue intake actor.

Each item is parsed and recorded on its own merits: a bad item is ``rejected`` with its error
and never fails the others; an item the server could not record now (an outage, a lost commit:
``LedgerError.transient``) is ``failed``, to be sent again with the same key. Each carries its
idempotency key, so a redelivered batch replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from ledger import commands as c
from ledger.errors import InvalidRequest, LedgerError, Unavailable, UnknownAccount
from ledger.events import Attribution, UsageMetered
from ledger.idempotency import MAX_KEY, as_normal_key
from ledger.service import Ledger

#: Most items one batch may carry.
MAX_BATCH = 1000


class UsageItem(BaseModel):
    """One metered use: ``quantity`` (the operation's unit) or ``quantities`` by dimension."""

    model_config = ConfigDict(extra="forbid")

    account_id: Annotated[str, Field(min_length=1, max_length=200)]
    operation: Annotated[str, Field(min_length=1, max_length=100)]
    quantity: StrictInt | None = None
    quantities: dict[Annotated[str, Field(max_length=100)], StrictInt] | None = None
    attribution: Attribution | None = None
    occurred_at: AwareDatetime | None = None
    idempotency_key: Annotated[str, BeforeValidator(as_normal_key), Field(min_length=1, max_length=MAX_KEY)]


Status = Literal["created", "replayed", "rejected", "failed"]


@dataclass(frozen=True)
class ItemResult:
    idempotency_key: str | None
    status: Status
    usage: UsageMetered | None = None
    error: LedgerError | None = None


def _unrecorded(key: str | None, error: LedgerError) -> ItemResult:
    """``failed`` when the error may pass (retry the item with its key), else ``rejected`` (final)."""
    return ItemResult(key, "failed" if error.transient else "rejected", error=error)


def _invalid(err: ValidationError) -> InvalidRequest:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return InvalidRequest(f"{where}: {first['msg']}" if where else str(first["msg"]))


def _command(raw: Any, only_account: str | None) -> c.Meter:
    item = UsageItem.model_validate(raw)
    if only_account is not None and item.account_id != only_account:
        # The same answer as for an account that does not exist: never reveal another account.
        raise UnknownAccount(item.account_id)
    return c.Meter(account_id=item.account_id, operation=item.operation, quantity=item.quantity,
                   quantities=item.quantities, attribution=item.attribution or Attribution(),
                   occurred_at=item.occurred_at, idempotency_key=item.idempotency_key)


async def record_usage(ledger: Ledger, items: Sequence[Any], *, only_account: str | None = None) -> list[ItemResult]:
    """Record a batch of metered usage (never refused for lack of credits); one result per item, in order.

    Raises ``Unavailable`` when no item could be recorded and some failed for a transient
    reason (the database unreachable for the whole batch): one answer to retry it all.
    """
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"a batch holds at most {MAX_BATCH} items, not {len(items)}")
    results: list[ItemResult | None] = [None] * len(items)
    commands: list[c.Meter] = []
    where: list[int] = []
    for i, raw in enumerate(items):
        try:
            commands.append(_command(raw, only_account))
            where.append(i)
        except (LedgerError, ValidationError) as err:
            key = raw.get("idempotency_key") if isinstance(raw, dict) else None
            error = _invalid(err) if isinstance(err, ValidationError) else err
            results[i] = _unrecorded(key if isinstance(key, str) else None, error)
    outcomes = await ledger.execute_many(commands) if commands else []
    for i, cmd, outcome in zip(where, commands, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            results[i] = _unrecorded(cmd.idempotency_key, outcome)
        else:
            usage = next(e for e in reversed(outcome.events) if isinstance(e, UsageMetered))
            results[i] = ItemResult(cmd.idempotency_key, "replayed" if outcome.replayed else "created", usage)
    done = [r for r in results if r is not None]
    failed = [r for r in done if r.status == "failed"]
    if failed and not any(r.usage is not None for r in done):
        assert failed[0].error is not None
        raise Unavailable(f"no item of the batch could be recorded ({failed[0].error.detail});"
                          " send it again with the same idempotency keys")
    return done
