"""The follower: applies records, in seq order, each once, to a key index and to a log's listeners.

What it is for: a process that does not append to the log it serves (a worker over the writer's segments; later
a cluster replica or a relay) must keep the same views a writer keeps: the key index (engine/keyspace) with its
listeners (the sync collections), and the commit listeners of the log (the server's release of waiting
responses, the hub's fan-out). `apply(records)` does exactly what a writer's put/delete and commit do, in the
same order: index first (listeners included), then `log.durable_seq`, then the commit listeners.

Invariants:
- records are applied in strictly increasing seq, each once (`apply` drops a record at or below `applied`);
- `applied` (the log's `durable_seq`) moves only after the index holds every record up to it, so a response
  waiting for that seq (read your writes) is released only when a read would see the write;
- the source of records (shared segments, JetStream, an upstream) is not this module's business: a feed calls
  `apply` with records whose values stay readable at their `loc` through `log`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("homestream.follower")


class Follower:
    """`log`: an object with the read interface of engine.log.store.Log whose records the feed hands in
    (it needs a writable `durable_seq` and `notify(records)`); `keyspace`: an engine.keyspace.Keyspace over it."""

    def __init__(self, log_: Any, keyspace: Any):
        self.log = log_
        self.keyspace = keyspace
        self.applied_total = 0

    @property
    def applied(self) -> int:
        return self.log.durable_seq

    def apply(self, records: list[Any]) -> int:
        """Apply `records` (seq order) to the index, then publish them; returns the applied seq."""
        applied = self.log.durable_seq
        if records and records[0].seq <= applied:
            records = [r for r in records if r.seq > applied]
        if not records:
            return applied
        ks_apply = self.keyspace.apply
        for rec in records:
            ks_apply(rec)
        self.log.durable_seq = records[-1].seq
        self.applied_total += len(records)
        self.log.notify(records)
        return self.log.durable_seq

    def jump(self, seq: int) -> None:
        """Take `seq` as applied without records (the index was rebuilt past it; nothing to publish)."""
        if seq > self.log.durable_seq:
            self.log.durable_seq = seq
            self.log.notify([])
