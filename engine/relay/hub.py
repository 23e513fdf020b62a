"""The relay's hub: the homeserver's Hub (engine/pubsub/hub.py) with the relay's frames, plus its gap records.

Upstream events are matched, encoded once and fanned out by the homeserver's own code; only the frame encoder
differs (engine/relay/record.py: relay seq and id, plus "upstream" and "upstream_id"). A GAP record concerns
every subscriber, whatever its patterns, so it is delivered to all of them: live ones here, catching-up ones
through `make_matcher`. Invariant: records reach `Hub.publish` in seq order and each exactly once, gaps
included, so `published_seq` and every subscription's position stay exact.
"""

from __future__ import annotations

from typing import Any, Callable

from ..http.sse import chunk
from ..log.record import GAP
from ..pubsub.hub import Hub
from ..pubsub.subscription import LIVE, RECORD_OVERHEAD
from .record import relay_frame


FRAME_CACHE = 8192  # frames kept by (seq, inline_max): subscribers catching up over the same range share them


class RelayHub(Hub):
    def __init__(self, *args: Any, **kw: Any):
        frames: dict[tuple[int, int | None], bytes] = {}

        def cached_frame(record: Any, inline_max: int | None = None) -> bytes:
            # a relay's catch-up has no C encoder (csrc/sse.c writes the standard frame only), so the frame of a
            # seq, which never changes, is made once for all subscribers reading it
            key = (record.seq, inline_max)
            frame = frames.get(key)
            if frame is None:
                if len(frames) >= FRAME_CACHE:
                    frames.clear()
                frame = frames[key] = relay_frame(record, inline_max)
            return frame

        super().__init__(*args, encoder=cached_frame, **kw)

    def publish(self, records: list[Any]) -> None:
        start = 0
        for i, record in enumerate(records):
            if record.kind == GAP:
                if i > start:
                    super().publish(records[start:i])
                self._broadcast(record)
                start = i + 1
        if start == 0:
            super().publish(records)
        elif start < len(records):
            super().publish(records[start:])

    def _broadcast(self, record: Any) -> None:
        dirty: list[Any] = []
        frame = None
        deliveries = 0
        for sub in self.slots:
            if sub is None or sub.mode != LIVE:
                continue
            if frame is None:
                frame = chunk(self.encode(record))
            if sub.special:
                sub.deliver_special(record, frame, dirty)
                continue
            if not sub.queue:
                dirty.append(sub)
            sub.queue.append(frame)
            sub.last = (record.seq, record.user)
            deliveries += 1
        self.published_seq = record.seq
        self.published_bytes += RECORD_OVERHEAD
        for sub in dirty:
            sub.flush()
        self.metrics.events_total += 1
        self.metrics.deliveries_total += deliveries
        if self._finishing:
            finishing, self._finishing = self._finishing, []
            for sub, reason in finishing:
                sub.end(reason)

    def make_matcher(self, patterns: list[Any], reader: str | None) -> Callable[[Any], bool]:
        base = super().make_matcher(patterns, reader)

        def matches(record: Any) -> bool:
            return record.kind == GAP or base(record)

        return matches
