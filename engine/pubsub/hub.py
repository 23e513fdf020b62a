"""The fan-out hub: matches each committed record once in the C tries and hands one shared frame to every
matching LIVE subscription.

Per event: one trie match, one SSE encoding (a second one only if some subscriber wants inline bodies), and for
each matching subscriber a list append. Each dirty subscription is flushed with one `writelines` once per loop
turn, not once per publish: the first publish of a turn schedules `_flush` with `call_soon`, so every commit
delivered in the same turn shares the send; and when another commit has already landed (its delivery is queued
on the loop) the flush steps aside once to run after it. No timer: a frame waits at most for callbacks already
queued. Invariants:
- `publish` sees every durable record exactly once in seq order (the log's commit listener), and afterwards
  `published_seq` is the seq of the last record handed out; CATCHUP readers never read beyond it;
- private records are matched only against the private trie, which holds only patterns of subscribers
  authenticated as the pattern's user; all-user patterns never see private records;
- subscriber ids index `slots` (a list, never rebound): the indexes' matchers read it and return the matching
  Subscription objects themselves, so a delivery costs no dict lookup and no int object per match.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

from ..http.sse import chunk, event_frame
from ..metrics import Metrics
from ..native.trie import SubscriptionIndex
from ..names import Pattern
from .subscription import CATCHUP, CLOSED, LIVE, RECORD_OVERHEAD, Subscription, make_matcher

log = logging.getLogger("homestream.pubsub")


class Hub:
    def __init__(self, log_: Any, metrics: Metrics, loop: asyncio.AbstractEventLoop | None = None, *,
                 inline_max: int = 4096, send_queue_bytes: int = 1 << 20, max_lag_bytes: int = 1 << 30,
                 keepalive: float = 15.0, encoder: Callable[..., bytes] = event_frame):
        self.log = log_
        self.metrics = metrics
        self.loop = loop or asyncio.get_event_loop()
        self.inline_max = inline_max
        self.send_queue_bytes = send_queue_bytes
        self.max_lag_bytes = max_lag_bytes
        self.public = SubscriptionIndex()
        self.private = SubscriptionIndex()
        self.slots: list[Subscription | None] = []
        self._match_public = self.public.matcher(self.slots)
        self._match_private = self.private.matcher(self.slots)
        self.free: list[int] = []
        self.count = 0
        self.lagging = 0
        self.published_seq = log_.durable_seq
        self.published_bytes = 0
        self.tick = 0
        self._frame_cache: dict[tuple[Any, int], bytes] = {}
        # encoder(record, inline_max=None): the event frame of a record (a relay's frames add its upstream);
        # the C replay of csrc/sse.c writes the standard frame only, so it serves only the standard encoder
        self.encode = encoder
        self.native_replay = encoder is event_frame
        self.inline_encoder = functools.partial(encoder, inline_max=inline_max)
        self._finishing: list[tuple[Subscription, str]] = []
        self.flushes_total = 0
        self._dirty: list[Subscription] = []  # subscriptions with queued frames, flushed by `_flush`
        self._flush_handle: asyncio.Handle | None = None
        self._flush_held = False
        self.keepalive_ticks = 3
        self._tick_interval = keepalive / self.keepalive_ticks
        self._ticker = self.loop.call_later(self._tick_interval, self._on_tick)
        metrics.gauge("homestream_subscribers", "open event-stream subscriptions", lambda: self.count)
        metrics.gauge("homestream_fanout_flushes_total", "writes of queued event frames to subscribers' sockets",
                      lambda: self.flushes_total)
        metrics.gauge("homestream_subscribers_lagging", "subscriptions catching up from the log",
                      lambda: self.lagging)

    # ---- subscriptions ----

    def attach(self, sub: Subscription, after: int | None) -> Subscription:
        if self.free:
            sub.id = self.free.pop()
            self.slots[sub.id] = sub
        else:
            sub.id = len(self.slots)
            self.slots.append(sub)
        self.count += 1
        for pattern in sub.patterns:
            self.public.add(sub.id, pattern)
            if sub.reader is not None and pattern.user == sub.reader:
                self.private.add(sub.id, pattern)
        sub.transport.set_write_buffer_limits(high=self.send_queue_bytes, low=self.send_queue_bytes // 4)
        sub.begin(after)
        if sub.mode == CATCHUP:
            self.lagging += 1
        return sub

    def detach(self, sub: Subscription, was_lagging: bool) -> None:
        if sub.id < 0 or self.slots[sub.id] is not sub:
            return
        for pattern in sub.patterns:
            self.public.remove(sub.id, pattern)
            if sub.reader is not None and pattern.user == sub.reader:
                self.private.remove(sub.id, pattern)
        self.slots[sub.id] = None
        self.free.append(sub.id)
        sub.id = -1
        self.count -= 1
        if was_lagging:
            self.lagging -= 1

    def rejoined(self, sub: Subscription) -> None:
        self.lagging -= 1

    def make_matcher(self, patterns: list[Pattern], reader: str | None) -> Callable[[Any], bool]:
        """The history matcher of a subscription (a relay's hub also passes its gap records)."""
        return make_matcher(patterns, reader)

    # ---- publishing ----

    def publish(self, records: list[Any]) -> None:
        dirty = self._dirty
        match_public = self._match_public
        match_private = self._match_private
        encode = self.encode
        deliveries = 0
        nbytes = 0
        size_total = 0
        for record in records:
            path = record.path
            size_total += RECORD_OVERHEAD + record.size
            if path.startswith("/pub/"):
                subs = match_public(record.user, path)
            else:
                subs = match_private(record.user, path)
            if not subs:
                continue
            frame = None
            for sub in subs:
                if sub.mode != LIVE:
                    continue
                if frame is None:
                    frame = chunk(encode(record))
                if sub.special:
                    sub.deliver_special(record, frame, dirty)
                    continue
                q = sub.queue
                if not q:
                    dirty.append(sub)
                q.append(frame)
                sub.last = (record.seq, record.user)
                deliveries += 1
                nbytes += len(frame)
        if records:
            self.published_seq = records[-1].seq
            self.published_bytes += size_total
        if dirty and self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        m = self.metrics
        m.events_total += len(records)
        m.deliveries_total += deliveries
        m.delivered_bytes_total += nbytes
        if self._finishing:
            finishing, self._finishing = self._finishing, []
            for sub, reason in finishing:
                sub.end(reason)

    def _flush(self) -> None:
        """Write every dirty subscription's queued frames, one `writelines` each (once per loop turn)."""
        self._flush_handle = None
        if not self._flush_held and self.log.durable_seq > self.published_seq:
            # a commit landed while this turn ran: its delivery is already queued, so flush once, after it
            self._flush_held = True
            self._flush_handle = self.loop.call_soon(self._flush)
            return
        self._flush_held = False
        dirty, self._dirty = self._dirty, []
        self.flushes_total += len(dirty)
        for sub in dirty:
            if sub.mode == CLOSED:
                sub.queue.clear()  # ended (its own end() flushed first) or disconnected
                continue
            sub.flush()

    def encoded_frame(self, encoder: Callable[[Any], bytes], record: Any) -> bytes:
        """The chunk-framed frame of `record` in a non-standard encoding, made once per record and encoder."""
        key = (encoder, record.seq)
        frame = self._frame_cache.get(key)
        if frame is None:
            if len(self._frame_cache) > 64:
                self._frame_cache.clear()
            frame = self._frame_cache[key] = chunk(encoder(record))
        return frame

    def finish_later(self, sub: Subscription, reason: str) -> None:
        self._finishing.append((sub, reason))

    # ---- housekeeping ----

    def _on_tick(self) -> None:
        self.tick += 1
        threshold = self.tick - self.keepalive_ticks
        for sub in self.slots:
            if sub is not None and sub.tick <= threshold and sub.mode != CLOSED:
                sub.keepalive()
        self._ticker = self.loop.call_later(self._tick_interval, self._on_tick)

    def shutdown(self) -> None:
        """End every stream with `end`/`shutdown`."""
        self._ticker.cancel()
        for sub in list(self.slots):
            if sub is not None and sub.mode != CLOSED:
                sub.end("shutdown")

    def close(self) -> None:
        self._ticker.cancel()
        self.public.close()
        self.private.close()


__all__ = ["Hub", "Pattern", "Subscription", "LIVE", "CATCHUP", "CLOSED"]
