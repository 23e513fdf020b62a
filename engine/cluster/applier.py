"""A replica's applier: follows the JetStream stream from its own last seq + 1 and applies each record, in seq
order, through one function (engine/cluster/apply.py), so the replica's log has the origin's seqs and bytes.

It reads with an ordered consumer (nats-py recreates it after a gap or a NATS server loss, from the last seq it
delivered). Every message is checked again here: a seq already applied is skipped; a seq beyond the next one,
or a record that does not frame, stops the applier and reports why (`on_error`) -- the node then rebuilds from
the stream instead of applying something out of order. Invariants: records are applied exactly once each, in
seq order, and only records JetStream holds (so nothing a replica shows can be taken back by a failover).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..log.record import PREFIX
from .jetstream import patiently

log = logging.getLogger("homestream.cluster")


class Applier:
    def __init__(self, cluster: Any, log_: Any, apply: Callable[[bytes], Any], on_error: Callable[[str], None]):
        self.cluster = cluster
        self.log = log_
        self.apply = apply
        self.on_error = on_error
        self.applied_total = 0
        self.applied_ts = 0  # the origin's append time (unix ms) of the newest record applied
        self.stream_last = 0  # the stream's last seq, as last seen (for the lag in records)
        self._sub: Any = None
        self._failed = False

    async def start(self) -> None:
        from nats.js import api

        start = self.log.last_seq + 1
        first, last = await patiently("stream state", self.cluster.stream_state)
        self.stream_last = last
        if last >= start and first > start:
            raise RuntimeError(f"the stream starts at seq {first}, past this node's next seq {start}: it cannot "
                               "catch up from the stream (copy a stopped node's data directory here: docs/CLUSTER.md)")
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        self._failed = False
        self._sub = await self.cluster.js.subscribe(self.cluster.names.subject, cb=self._on_msg, ordered_consumer=True,
                                                    config=config, idle_heartbeat=1.0,
                                                    pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30)
        log.info("replica: applying the stream from seq %d (stream last seq %d)", start, last)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    @property
    def running(self) -> bool:
        return self._sub is not None and not self._failed

    async def _on_msg(self, msg: Any) -> None:
        if self._failed:
            return
        data = msg.data
        if len(data) < PREFIX.size:
            return self._fail(f"a stream message of {len(data)} bytes is not a record")
        fields = PREFIX.unpack_from(data, 0)
        seq = fields[7]
        expected = self.log.last_seq + 1
        if seq < expected:
            return  # delivered again after a consumer reset
        if seq > expected:
            return self._fail(f"the stream gave seq {seq} where {expected} was next")
        try:
            self.apply(data)
        except Exception as exc:
            return self._fail(f"cannot apply seq {seq}: {exc}")
        self.applied_total += 1
        self.applied_ts = fields[8]
        if seq > self.stream_last:
            self.stream_last = seq

    def _fail(self, reason: str) -> None:
        self._failed = True
        log.error("replica: %s", reason)
        self.on_error(reason)

    def lag_seconds(self, now: float | None = None) -> float:
        """How far behind the origin's clock the newest applied record is, while records are outstanding."""
        if self.stream_last <= self.log.last_seq or not self.applied_ts:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - self.applied_ts / 1000)
