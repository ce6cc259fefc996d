"""What the credits a reservation gives back are called in the activity feed.

One rule, applied when a refund of a reservation is read (the rows keep the reservation's own
operation, so a new rule never needs a rebuild):

- an operation priced per unit of time, ``<family>_<what>_per_<unit>``, becomes
  ``<family>_refund_<what>``: ``training_h100_per_minute`` -> ``training_refund_h100``;
- any other operation ``X`` becomes ``X_refund``: ``email`` -> ``email_refund``,
  ``gpu-s`` -> ``gpu-s_refund``.
"""

from __future__ import annotations

import re

_PER_UNIT = re.compile(r"^(?P<family>[^_]+)_(?P<what>.+)_per_[^_]+$")


def refund_operation(operation: str) -> str:
    """The operation a reservation's returned credits are shown under (see the module's rule)."""
    m = _PER_UNIT.fullmatch(operation)
    if m is not None:
        return f"{m['family']}_refund_{m['what']}"
    return f"{operation}_refund"
