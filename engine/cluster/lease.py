"""The origin's lease: one key in a JetStream key-value bucket whose TTL is `--lease-ttl`.

The holder renews it (an update naming the revision it holds) every third of the TTL; if it stops, the key
lapses and a replica that has applied the whole stream creates it (a create fails if the key exists), becoming
the origin. A stale holder learns it was replaced when its update is refused. The lease says who may write; the
stream's `Nats-Expected-Last-Sequence` check (engine/cluster/publisher.py) makes sure a stale writer cannot.
Invariants: at most one create succeeds per lapse; a holder never writes a lease it no longer holds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

KEY = "origin"


@dataclass
class Holder:
    node: str
    url: str
    revision: int


class Lease:
    def __init__(self, kv: Any, node: str, url: str):
        self.kv = kv
        self.node = node
        self.url = url
        self.revision = 0  # of the lease this node holds; 0 when it holds none
        self.changes_total = 0  # times this node took the lease

    def _value(self) -> bytes:
        return json.dumps({"node": self.node, "url": self.url, "since": time.time()}).encode()

    async def holder(self) -> Holder | None:
        """Who holds the lease now, None if nobody does."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError

        try:
            entry = await self.kv.get(KEY)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        value = json.loads(entry.value)
        return Holder(value.get("node", "?"), value.get("url", ""), entry.revision)

    async def take(self, over: Holder | None = None) -> bool:
        """Create the lease (or take over `over`, a lease this very node left behind when it was restarted)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            if over is None:
                self.revision = await self.kv.create(KEY, self._value())
            else:
                self.revision = await self.kv.update(KEY, self._value(), last=over.revision)
        except KeyWrongLastSequenceError:
            return False
        self.changes_total += 1
        return True

    async def renew(self) -> bool:
        """Extend the lease; False if another node holds it now (this one was deposed)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.update(KEY, self._value(), last=self.revision)
        except KeyWrongLastSequenceError:
            self.revision = 0
            return False
        return True

    async def release(self) -> None:
        """Give the lease up (a clean shutdown of the origin), so a replica need not wait for it to lapse."""
        if not self.revision:
            return
        try:
            await self.kv.delete(KEY, last=self.revision)
        except Exception:
            pass
        self.revision = 0
