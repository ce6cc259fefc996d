"""Stripe's bracketed form encoding, decoded into nested dicts and lists.

The SDK sends ``metadata[k]=v``, ``line_items[0][price_data][unit_amount]=500`` and
``expand[0]=x`` (lists always indexed); values stay strings, as Stripe receives them, and the
``as_*`` helpers coerce them where a field is read.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from ledger.testing.stripe.errors import invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode(body: str) -> dict[str, Any]:
    """``a[b][0]=1&a[c]=2`` → ``{"a": {"b": ["1"], "c": "2"}}``; an unreadable key is a 400."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        match = _KEY.match(key)
        if match is None:
            raise invalid_request(f"Invalid parameter name: {key}", param=key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        _put(root, path, value, key)
    decoded = _listify(root)
    if not isinstance(decoded, dict):  # top-level keys like ``0=x``
        raise invalid_request("Invalid parameter names: indexes at the top level.")
    return decoded


def _put(node: dict[str, Any], path: list[str], value: str, key: str) -> None:
    for part in path[:-1]:
        # ``expand[]=x`` (unindexed) appends: give each one its own slot.
        name = part if part else str(len(node))
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid parameter: {key} mixes a value and a hash", param=path[0])
        node = child
    last = path[-1] if path[-1] else str(len(node))
    if isinstance(node.get(last), dict):
        raise invalid_request(f"Invalid parameter: {key} mixes a value and a hash", param=path[0])
    node[last] = value


def _listify(node: Any) -> Any:
    """Dicts whose keys are all indexes become lists, in index order."""
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def as_int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int = 0) -> int | None:
    """An integer parameter (Stripe amounts are integers in the currency's smallest unit)."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid_request(f"Invalid integer: {raw}", param=name)
    value = int(raw)
    if value < minimum:
        raise invalid_request(f"This value must be greater than or equal to {minimum}.", param=name)
    return value


def as_bool(params: dict[str, Any], name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if raw in ("true", "false"):
        return bool(raw == "true")
    raise invalid_request(f"Invalid boolean: {raw}", param=name)


def as_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    if not isinstance(raw, str):
        raise invalid_request(f"Invalid string: {name}", param=name)
    return raw


def as_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    raw = params.get(name)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid_request(f"Invalid object: {name}", param=name)
    return raw


def as_list(params: dict[str, Any], name: str) -> list[Any]:
    raw = params.get(name)
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list):
        raise invalid_request(f"Invalid array: {name}", param=name)
    return raw


def metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, str]:
    """Stripe's metadata: string values; an empty value removes the key on update."""
    raw = as_dict(params, name)
    if not all(isinstance(v, str) for v in raw.values()):
        raise invalid_request("Metadata values must be strings.", param=name)
    return {k: str(v) for k, v in raw.items()}
