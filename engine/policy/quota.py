"""The per-user storage quota (SPEC 5.2 `--user-quota-bytes`). Pure.

A user's usage is their live bytes: the sum of the sizes of their current values, read from the key index
(engine/keyspace), so it is exact across restarts, compaction and retention, and a refused write (never
appended) is never charged. Rule: a write that grows the total past the limit is refused; a DELETE, or an
overwrite that does not grow the total, always passes, even for a user already over a lowered limit.
"""

from __future__ import annotations

from ..errors import QuotaExceeded


def exceeds(limit: int, live: int, old_size: int, new_size: int) -> bool:
    """True when replacing a value of `old_size` (0: a new key) by `new_size` takes `live` past `limit`."""
    return limit > 0 and new_size > old_size and live - old_size + new_size > limit


class Quota:
    """The guard the keyspace calls before appending a PUT (Keyspace.put_guard)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, user: str, live: int, old_size: int, new_size: int) -> None:
        if exceeds(self.limit, live, old_size, new_size):
            raise QuotaExceeded(f"this write would take {user}'s stored bytes to {live - old_size + new_size}, "
                                f"past the quota of {self.limit}")
