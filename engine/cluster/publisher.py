"""The origin's publisher: every durable log record into the JetStream stream, in seq order, as its own bytes.

Each record is published with `Nats-Msg-Id: <seq>.<term>` (JetStream drops a duplicate, so a resend is harmless)
and `Nats-Expected-Last-Sequence: <seq - 1>` (JetStream refuses it unless the stream ends just before it). So the
stream's seq is homestream's seq, and a deposed origin cannot append: its next publish is refused and it steps
down. The term is the lease revision this origin holds; every record after its first also carries
`Nats-Expected-Last-Msg-Id: <seq - 1>.<term>`, because publishes are pipelined (up to `window` unacknowledged):
if another origin's record took seq N, our N is refused, and so is our N + 1 (the stream's last message is not
our N), which the expected sequence alone would have let in on top of theirs.

Anything unexpected -- an error reply, a "no responders" status, no acknowledgement within `ack_timeout` --
starts a reconciliation against the stream itself: every unacknowledged record the stream holds with the same
bytes counts as acknowledged; the first one it holds with other bytes means another origin wrote there
(fenced); the rest are published again. Invariants: `acked_seq` only grows and every seq up to it is in the
stream with this log's bytes; records go out in seq order; one reconciliation runs at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from ..log.record import PREFIX, U32

log = logging.getLogger("homestream.cluster")


class Publisher:
    def __init__(self, cluster: Any, log_: Any, on_acked: Callable[[int], None], on_fenced: Callable[[str], None],
                 *, term: str, window: int = 4096, ack_timeout: float = 5.0):
        self.cluster = cluster
        self.log = log_
        self.on_acked = on_acked
        self.on_fenced = on_fenced
        self.window = window
        self.ack_timeout = ack_timeout
        self.subject = cluster.names.subject
        self.term = term
        self._term_first = 1  # the first seq this origin publishes: the one without an expected last msg id
        self.sent_seq = 0
        self.acked_seq = 0
        self.acked_at = 0.0  # unix time of the newest acknowledged record's append (for lag)
        self.publish_failures_total = 0
        self.reconciliations_total = 0
        self._progress_at = time.monotonic()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sub: Any = None
        self._reconciling = False
        self._fenced = False
        self._tell_scheduled = False
        self._round = 0  # sends since the last reconciliation; replies name theirs
        self._prefix = ""

    async def start(self, acked_seq: int) -> None:
        """Publish from acked_seq + 1 on (everything up to acked_seq is in the stream already)."""
        self.sent_seq = self.acked_seq = acked_seq
        self._term_first = acked_seq + 1
        self._prefix = self.cluster.nc.new_inbox()
        self._sub = await self.cluster.nc.subscribe(self._prefix + ".*.*", cb=self._on_reply)
        self.log.add_commit_listener(self._on_commit)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def stop(self) -> None:
        self.log.remove_commit_listener(self._on_commit)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    @property
    def unacked(self) -> int:
        return self.sent_seq - self.acked_seq

    def _on_commit(self, records: list[Any]) -> None:
        self._wake.set()

    # ---- sending ----

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.1, self.ack_timeout / 4))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._fenced:
                return
            if self.unacked and time.monotonic() - self._progress_at > self.ack_timeout:
                log.warning("JetStream acknowledged nothing for %.1f s (%d records waiting): checking the stream",
                            self.ack_timeout, self.unacked)
                await self._reconcile()
            if not self._reconciling:
                try:
                    await self._send_more()
                except Exception as exc:  # a lost connection: nats-py buffers, or refuses when its buffer is full
                    self.publish_failures_total += 1
                    log.warning("publishing to JetStream failed (%s); retrying", exc)
                    await asyncio.sleep(0.2)
                    self._wake.set()

    async def _send_more(self) -> None:
        durable = self.log.durable_seq
        publish = self.cluster.nc.publish
        term, first = self.term, self._term_first
        while self.sent_seq < durable and self.unacked < self.window and not self._reconciling:
            upto = min(durable, self.acked_seq + self.window)
            if not self.unacked:
                self._progress_at = time.monotonic()
            for _first, _last, view in self.log.read_raw(self.sent_seq + 1, until=upto):
                off, n = 0, len(view)
                while off < n:
                    length = U32.unpack_from(view, off)[0]
                    seq = PREFIX.unpack_from(view, off)[7]
                    if seq != self.sent_seq + 1:
                        raise RuntimeError(f"log read gave seq {seq} after {self.sent_seq}")
                    headers = {"Nats-Msg-Id": f"{seq}.{term}", "Nats-Expected-Last-Sequence": str(seq - 1)}
                    if seq > first:
                        headers["Nats-Expected-Last-Msg-Id"] = f"{seq - 1}.{term}"
                    await publish(self.subject, bytes(view[off:off + length]),
                                  reply=f"{self._prefix}.{self._round}.{seq}", headers=headers)
                    self.sent_seq = seq
                    off += length
                    if self._reconciling:
                        return

    # ---- acknowledgements ----

    async def _on_reply(self, msg: Any) -> None:
        _prefix, round_, seq_text = msg.subject.rsplit(".", 2)
        seq = int(seq_text)
        if seq <= self.acked_seq or self._fenced:
            return
        try:
            reply = json.loads(msg.data) if msg.data else {"error": {"description": f"status {msg.header}"}}
        except ValueError:
            reply = {"error": {"description": "unreadable reply"}}
        if "error" not in reply and reply.get("seq") == seq:
            self._acked(seq)  # stored, whichever round sent it
            return
        if int(round_) != self._round:
            return  # an error for a send that a reconciliation has settled or sent again since
        self.publish_failures_total += 1
        log.warning("JetStream did not take seq %d: %s", seq, reply.get("error", reply))
        await self._reconcile()

    def _acked(self, seq: int) -> None:
        self.acked_seq = seq
        self._progress_at = time.monotonic()
        if not self._tell_scheduled:  # one release per burst of acknowledgements, not one per record
            self._tell_scheduled = True
            asyncio.get_running_loop().call_soon(self._tell_acked)

    def _tell_acked(self) -> None:
        self._tell_scheduled = False
        self.on_acked(self.acked_seq)
        self._wake.set()

    async def _reconcile(self) -> None:
        """Settle the unacknowledged records against the stream (see the module comment)."""
        if self._reconciling or self._fenced:
            return
        self._reconciling = True
        self.reconciliations_total += 1
        try:
            tries = 0
            while True:
                try:
                    _first, last = await self.cluster.stream_state()
                    break
                except Exception as exc:
                    if tries % 20 == 0:  # once, then every ten seconds or so while NATS stays away
                        log.warning("cannot read the stream's state (%s); retrying", exc)
                    tries += 1
                    await asyncio.sleep(0.5)
            seq = self.acked_seq + 1
            while seq <= last:
                if seq > self.log.durable_seq:
                    self._fenced = True
                    self.on_fenced(f"the stream ends at seq {last}, past this node's {seq - 1}: another origin")
                    return
                theirs = await self.cluster.record(seq)
                ours = b"".join(bytes(v) for _f, _l, v in self.log.read_raw(seq, until=seq))
                if theirs != ours:
                    self._fenced = True
                    self.on_fenced(f"the stream holds another record at seq {seq}: another node is the origin")
                    return
                self._acked(seq)
                seq += 1
            self.sent_seq = self.acked_seq  # publish the rest again; duplicates are dropped by Nats-Msg-Id
            self._round += 1
            self._progress_at = time.monotonic()
        finally:
            self._reconciling = False
            self._wake.set()
