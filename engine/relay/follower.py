"""One upstream as the relay follows it: its state, cursor, counters, back-off, and the one place its events enter
the relay's log. The two kinds (engine/relay/homestream.py, engine/relay/pubky.py) read the upstream; this module
decides what is written.

Invariants:
- an upstream event becomes exactly one relay record, appended with the Meta (engine/relay/record.py) that says
  where to resume after it, so the relay's cursor for an upstream is its newest record, in memory (`last`) and,
  after a crash, in the log (engine/relay/cursors.py);
- appends happen on the loop thread in the upstream's order; the record is published to subscribers by the
  server's commit listener once durable, like a homeserver's write;
- a follower never blocks: a dead or slow upstream only ever delays its own task.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from ..errors import InvalidName, ValueTooLarge
from ..log.record import GAP, PUT
from .record import BODY, GAP_PATH, GAP_USER, Meta, resume_point
from .upstreams import UpstreamSpec

log = logging.getLogger("homestream.relay")

HEALTHY_CONNECTION = 10.0  # a connection that lived this long resets the back-off
BASE_DELAY = 0.25


def backoff_delay(attempt: int, cap: float, base: float = BASE_DELAY, rng: random.Random | None = None) -> float:
    """Jittered exponential back-off: uniform in [0.5, 1] x min(cap, base x 2^attempt)."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


class Follower:
    """State shared by both kinds; `run()` (in the subclasses) is the task that follows the upstream."""

    kind = ""

    def __init__(self, spec: UpstreamSpec, log_: Any, *, retry_max: float = 30.0,
                 last: tuple[int, Meta] | None = None):
        self.name = spec.name
        self.url = spec.url
        self.log = log_
        self.retry_max = retry_max
        self.state = "starting"
        self.last_seq = last[0] if last else 0  # relay seq of the newest record of this upstream
        self.last: Meta | None = last[1] if last else None
        self.events_total = 0
        self.gaps_total = 0
        self.reconnects_total = 0
        self.errors_total = 0
        self.skipped_total = 0  # upstream events the relay could not store (invalid names)
        self.copy_lag = 0.0  # s from the upstream's ts to the relay's append, for the last event copied
        self.lost_at: float | None = time.time()  # when the upstream was last lost (None while connected)
        self.last_error = ""

    # ---- the cursor ----

    def resume(self) -> tuple[int, int]:
        """(cursor, events of that page to skip): where to read this upstream from next."""
        return resume_point(self.last) if self.last is not None else (0, 0)

    @property
    def cursor_text(self) -> str | None:
        if self.last is None:
            return None
        return str(self.resume()[0]) if self.kind == "pubky" else str(self.last.cursor)

    def lag_s(self, now: float | None = None) -> float:
        """Seconds the relay's copy is behind: the last event's copy delay, or longer while the upstream is lost."""
        now = time.time() if now is None else now
        if self.lost_at is not None:
            return round(max(self.copy_lag, now - self.lost_at), 3)
        return round(self.copy_lag, 3)

    def health(self) -> dict:
        return {"name": self.name, "url": self.url, "kind": self.kind or None, "state": self.state,
                "cursor": self.cursor_text, "lag_s": self.lag_s()}

    # ---- the one write path ----

    def append_event(self, kind: int, user: str, path: str, digest: bytes, body: bytes | None, meta: Meta,
                     now_ms: int | None = None) -> bool:
        """Append one upstream PUT/DEL; False (and counted) when its names cannot be stored."""
        value = b""
        if body is not None and kind == PUT:
            meta.flags |= BODY
            value = body
        try:
            rec = self.log.append(kind, user, path, value, digest=digest if kind == PUT else b"",
                                  ext=meta.encode())
        except ValueTooLarge:
            meta.flags &= ~BODY
            rec = self.log.append(kind, user, path, b"", digest=digest, ext=meta.encode())
        except InvalidName as exc:
            self.skipped_total += 1
            log.warning("upstream %s: event %s skipped: %s", self.name, meta.upstream_id(user), exc)
            return False
        self._appended(rec.seq, meta)
        self.events_total += 1
        if meta.a:
            now = (time.time() * 1000) if now_ms is None else now_ms
            self.copy_lag = max(0.0, (now - meta.a) / 1000.0)
        return True

    def append_gap(self, first: int, last: int, cursor: int, flags: int = 0) -> None:
        """Record that upstream seqs first..last are gone from the upstream: a GAP record naming them."""
        meta = Meta(self.name, cursor, 0, first, last, 0, flags)
        rec = self.log.append(GAP, GAP_USER, GAP_PATH, b"", ext=meta.encode())
        self._appended(rec.seq, meta)
        self.gaps_total += 1
        log.warning("upstream %s: events %d..%d are no longer held upstream; a gap is recorded", self.name,
                    first, last)

    def _appended(self, seq: int, meta: Meta) -> None:
        self.last_seq = seq
        self.last = meta

    # ---- connection bookkeeping for the subclasses ----

    def connected(self, state: str) -> None:
        self.state = state
        self.lost_at = None

    def failed(self, reason: str, *, storage: bool = False) -> None:
        if self.lost_at is None:
            self.lost_at = time.time()
        self.errors_total += 1
        self.last_error = reason
        self.state = "failed" if storage else "backoff"
