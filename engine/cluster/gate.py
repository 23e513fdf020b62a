"""The replication gate: between the log's commits and everything that answers for them (waiting write
responses, the hub, Min-Seq waiters). The server listens to the gate instead of the log on a cluster node.

On a replica, and on an origin with `--replication-ack local`, a commit passes at once. On an origin with
`--replication-ack cluster` it is held until JetStream has acknowledged its records (`acked`), so a client's
write is answered, and an event delivered to anyone, only once a failover can no longer take it back.
Invariants: listeners see every committed record exactly once, in seq order; `released_seq` only grows and is
never above the log's durable seq; records are released in the order they were committed.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable


class ReplicationGate:
    def __init__(self, log: Any):
        self.log = log
        self.hold = False
        self.acked_seq = log.durable_seq  # the newest seq JetStream has acknowledged (while holding)
        self._held: deque[Any] = deque()
        self._listeners: list[Callable[[list[Any]], None]] = []
        log.add_commit_listener(self._on_commit)

    @property
    def released_seq(self) -> int:
        durable = self.log.durable_seq
        return min(durable, self.acked_seq) if self.hold else durable

    @property
    def held(self) -> int:
        """Records committed here and not yet released (waiting for JetStream)."""
        return len(self._held)

    def add_commit_listener(self, fn: Callable[[list[Any]], None]) -> None:
        self._listeners.append(fn)

    def set_hold(self, hold: bool, acked_seq: int) -> None:
        """Hold commits until JetStream acknowledges them (a cluster-ack origin) or not; `acked_seq` is what
        JetStream already has. Dropping the hold releases everything held."""
        self.acked_seq = acked_seq
        self.hold = hold
        self._release()

    def acked(self, seq: int) -> None:
        """JetStream has every record up to `seq`."""
        if seq > self.acked_seq:
            self.acked_seq = seq
            if self.hold:
                self._release()

    def _on_commit(self, records: list[Any]) -> None:
        if not self.hold and not self._held:
            self._tell(records)
            return
        self._held.extend(records)
        self._release()

    def _release(self) -> None:
        upto = self.released_seq
        held = self._held
        batch = []
        while held and held[0].seq <= upto:
            batch.append(held.popleft())
        self._tell(batch)

    def _tell(self, records: list[Any]) -> None:
        for fn in self._listeners:
            fn(records)
