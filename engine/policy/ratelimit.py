"""Token buckets per key (a user, a client address) and open-stream counts per key (SPEC 5.2).

A bucket of burst B refilled at R tokens per second is kept as one integer per key, its "theoretical arrival
time" (GCRA, the same bucket in virtual time): a request at `now` passes when `tat - now <= (B - 1) * T`
(T = 1/R in nanoseconds) and moves `tat` on by T. So a request under the limit costs one clock read, one dict
lookup and one dict store.

Invariants:
- B = max(1, floor(R)): a full bucket lets exactly B requests through at one instant, the next is refused;
- time is integer nanoseconds, so "exactly empty" is exact (no float drift);
- memory is bounded: keys live in two generations; every `period` (the time a bucket takes to refill from
  empty, at least 1 s) the older generation is dropped. A key untouched for a whole period has a full bucket,
  so dropping it changes no answer. A hard cap (`max_keys`) rotates early when too many keys arrive in one
  period (then the oldest generation is dropped early: memory wins over exactness for a flood of addresses);
- a refusal charges nothing and says when to retry: whole seconds, at least 1.
"""

from __future__ import annotations

import time
from typing import Callable, Hashable

NS = 1_000_000_000


class RateLimiter:
    __slots__ = ("rate", "burst", "interval", "tolerance", "period", "max_keys", "clock", "_new", "_old", "_flip")

    def __init__(self, rate: float, *, clock: Callable[[], int] = time.monotonic_ns, max_keys: int = 1 << 20):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, int(rate))
        self.interval = max(1, round(NS / rate))
        self.tolerance = (self.burst - 1) * self.interval
        self.period = max(NS, self.burst * self.interval)
        self.max_keys = max_keys
        self.clock = clock
        self._new: dict[Hashable, int] = {}
        self._old: dict[Hashable, int] = {}
        self._flip = clock() + self.period

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def take(self, key: Hashable) -> int:
        """0 when the request passes (and is charged), else the seconds to wait before retrying (>= 1)."""
        now = self.clock()
        if now >= self._flip or len(self._new) >= self.max_keys:
            self._rotate(now)
        new = self._new
        tat = new.get(key)
        if tat is None:
            tat = self._old.pop(key, now)
        if tat < now:
            tat = now
        ahead = tat - now - self.tolerance
        if ahead > 0:
            new[key] = tat  # keep it in the young generation: it is not full
            return max(1, -(-ahead // NS))
        new[key] = tat + self.interval
        return 0

    def _rotate(self, now: int) -> None:
        self._old = self._new
        self._new = {}
        self._flip = now + self.period


class StreamCounter:
    """Open streams per key, at most `limit` each; a key is forgotten when its last stream closes."""

    __slots__ = ("limit", "_open")

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def count(self, key: Hashable) -> int:
        return self._open.get(key, 0)

    def full(self, key: Hashable) -> bool:
        return self._open.get(key, 0) >= self.limit

    def opened(self, key: Hashable) -> None:
        self._open[key] = self._open.get(key, 0) + 1

    def closed(self, key: Hashable) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)
