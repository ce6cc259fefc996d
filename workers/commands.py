"""Commands as message payloads: ``[name, fields]``, so any keyed command can cross the queue."""

from __future__ import annotations

import typing
from typing import Any

from ledger import commands as c

#: Every command type by name (the members of ``AnyCommand``).
COMMANDS: dict[str, type[c.Command]] = {cls.__name__: cls for cls in typing.get_args(c.AnyCommand)}


def dump(cmd: c.Command) -> list[Any]:
    """A JSON-ready payload for ``cmd``."""
    return [type(cmd).__name__, cmd.model_dump(mode="json", exclude_defaults=True)]


def load(payload: list[Any]) -> c.Command:
    """The command a payload names; ``ValueError`` for an unknown name."""
    name, fields = payload
    cls = COMMANDS.get(name)
    if cls is None:
        raise ValueError(f"unknown command {name!r}")
    # JSON turned datetimes and UUIDs into strings: validate leniently, then the command is strict.
    return cls.model_validate(fields, strict=False)
