"""One event-stream connection: its patterns, its position in the log, and how frames reach its socket.

A subscription is in one of three modes:
- LIVE: the hub appends shared frames to `queue` while publishing and flushes each dirty subscription once per
  publish (one `writelines` per connection per batch);
- CATCHUP: it reads the log itself from `pos + 1` up to the hub's published seq, in bounded slices while the
  socket accepts data, then turns LIVE. History replay on resume and recovery from a full send queue are the
  same path;
- CLOSED: an `end` frame (or a disconnect) finished it.
Invariants: every matching event with seq > the resume point is written exactly once and in seq order; a LIVE
subscription has seen every published seq (`pos` is implicit: the hub's published seq); the bytes queued per
connection are bounded by the transport's high-water mark (`send_queue_bytes`), past which the connection falls
back to CATCHUP instead of buffering more.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..http.sse import END_OF_BODY, KEEPALIVE, chunk, end_frame, gap_frame, retry_frame
from ..names import Pattern, encode_seq, is_public
from ..native.sse import Replayer, ReplayFilter
from . import history


class HubView(Protocol):
    """What a Subscription uses of its hub (engine/pubsub/hub.py's Hub): typed here so that this module does not
    import hub.py, which imports it."""

    log: Any
    loop: Any
    metrics: Any
    tick: int
    lagging: int
    published_seq: int
    published_bytes: int
    max_lag_bytes: int
    inline_encoder: Any

    def encoded_frame(self, encoder: Any, record: Any) -> bytes: ...

    def finish_later(self, sub: "Subscription", reason: str) -> None: ...

    def detach(self, sub: "Subscription", was_lagging: bool) -> None: ...

    def rejoined(self, sub: "Subscription") -> None: ...


LIVE, CATCHUP, CLOSED = 1, 2, 3
CATCHUP_SLICE_BYTES = 256 * 1024  # written per loop turn while catching up, so one reader cannot starve others
# examined per loop turn while catching up, however few records match (a sparse pattern must not walk the whole
# log in one turn): log bytes walked in C (native), records in C (scan filter) or in Python (any other matcher)
CATCHUP_SCAN_BYTES = 8 * 1024 * 1024
CATCHUP_SCAN_RECORDS = 50_000
CATCHUP_PY_RECORDS = 5_000
RECORD_OVERHEAD = 160  # rough bytes of log per record besides the value, for the lag estimate


_replayer: Replayer | None = None  # the one output buffer of native catch-up (one event loop; used synchronously)


def native_filter(patterns: list[Pattern], reader: str | None, *, inline: bool, limit: int | None,
                  encoder: Any, matches: Any) -> ReplayFilter | None:
    """The one place that chooses the catch-up path: a C filter (csrc/sse.c) for the simple case -- one pattern,
    the standard frame (no inline bodies, no custom encoder or matcher: pubky streams stay in Python), no limit
    -- else None (the Python path of make_matcher + event_frame). Private records pass, as in make_matcher,
    only when the pattern names one user and the reader is that user."""
    if len(patterns) != 1 or inline or encoder is not None or matches is not None or limit is not None:
        return None
    p = patterns[0]
    return ReplayFilter(p.user, p.path, p.prefix, allow_private=p.user is not None and reader == p.user)


def make_matcher(patterns: list[Pattern], reader: str | None) -> Callable[[Any], bool]:
    """The Python twin of the tries, used when reading history: does a record match, for this reader?"""
    exact = {(p.user, p.path) for p in patterns if not p.prefix}
    prefixes = [(p.user, p.path) for p in patterns if p.prefix]
    if len(patterns) == 1 and prefixes and prefixes[0][0] is None:
        only = prefixes[0][1]  # the common case of one all-user prefix (`*`, `*/pub/app/*`): public only

        def matches_one(record: Any) -> bool:
            path = record.path
            return path.startswith(only) and path.startswith("/pub/")

        return matches_one

    def matches(record: Any) -> bool:
        user, path = record.user, record.path
        if not is_public(path):
            if reader is None or reader != user:
                return False
            own = [(u, p) for (u, p) in prefixes if u == user]
            return (user, path) in exact or any(path.startswith(p) for _, p in own)
        if (user, path) in exact or (None, path) in exact:
            return True
        for u, p in prefixes:
            if (u is None or u == user) and path.startswith(p):
                return True
        return False

    return matches


class Subscription:
    __slots__ = ("hub", "conn", "transport", "id", "patterns", "reader", "matches", "queue", "mode", "pos",
                 "last", "special", "limit_left", "inline", "live", "skip_until", "tick", "pos_bytes",
                 "scheduled", "framing", "end_on_history", "encoder", "quiet", "native", "scan")

    def __init__(self, hub: HubView, conn: Any, patterns: list[Pattern], reader: str | None, *,
                 limit: int | None, inline: bool = False, live: bool = True, chunked: bool = True,
                 encoder: Callable[[Any], bytes] | None = None, matches: Callable[[Any], bool] | None = None,
                 quiet: bool = False, scan: Any = None):
        self.hub = hub
        self.conn = conn
        self.transport = conn.transport
        self.id = -1
        self.patterns = patterns
        self.reader = reader
        self.matches = matches or hub.make_matcher(patterns, reader)
        self.native = native_filter(patterns, reader, inline=inline, limit=limit, encoder=encoder,
                                    matches=matches) if hub.native_replay else None
        self.queue: list[bytes] = []
        self.mode = LIVE
        self.pos = 0  # CATCHUP: last seq examined
        self.last: tuple[int, str] | None = None  # (seq, user) of the last event delivered
        self.limit_left = limit if limit is not None else -1
        self.inline = inline
        self.live = live
        self.skip_until = 0
        # encoder: how this stream writes an event, when not the shared standard frame (inline, pubky)
        self.encoder = hub.inline_encoder if inline else encoder
        self.special = self.encoder is not None or limit is not None or matches is not None
        self.quiet = quiet  # pubky streams: no retry preamble, no end frame
        self.tick = hub.tick
        self.pos_bytes = 0
        self.scheduled = False
        self.framing = chunk if chunked else bytes
        self.end_on_history = not live
        self.scan = scan  # a history.ScanFilter equivalent to `matches`: catch-up finds records in C

    # ---- start ----

    def begin(self, after: int | None) -> None:
        """Write the preamble and choose the starting mode for a resume point (None: live from now)."""
        hub = self.hub
        if not self.quiet:
            self.transport.write(self.framing(retry_frame()))
        published = hub.published_seq
        if after is None:
            if self.end_on_history:
                self.end("history")
                return
            self.mode = LIVE
            return
        first = hub.log.first_seq
        if after + 1 < first:
            self.transport.write(self.framing(gap_frame(after + 1, first - 1)))
            after = first - 1
        if after >= published:
            if self.end_on_history:
                self.end("history")
                return
            self.mode = LIVE
            if after > published:
                self.skip_until = after
                self.special = True
            return
        self.mode = CATCHUP
        self.pos = after
        self.pos_bytes = hub.published_bytes - (published - after) * RECORD_OVERHEAD
        self.schedule_catchup()

    # ---- live path (called by the hub) ----

    def deliver_special(self, record: Any, frame: bytes, dirty: list["Subscription"]) -> None:
        """Live delivery for subscriptions with a limit, inline bodies or a resume point in the future."""
        if record.seq <= self.skip_until or not self.matches(record):
            return
        if self.encoder is not None:
            frame = self.hub.encoded_frame(self.encoder, record)
        q = self.queue
        if not q:
            dirty.append(self)
        q.append(frame)
        self.last = (record.seq, record.user)
        if self.limit_left > 0:
            self.limit_left -= 1
            if self.limit_left == 0:
                self.mode = CLOSED  # the hub flushes the queue, then we end
                self.hub.finish_later(self, "limit")

    def flush(self) -> None:
        q = self.queue
        if q:
            self.transport.writelines(q)
            q.clear()
        self.tick = self.hub.tick

    # ---- flow control (called by the connection) ----

    def on_pause(self) -> None:
        if self.mode == LIVE:
            hub = self.hub
            self.mode = CATCHUP
            self.pos = hub.published_seq
            self.pos_bytes = hub.published_bytes
            hub.metrics.catchups_total += 1
            hub.lagging += 1

    def on_resume(self) -> None:
        if self.mode == CATCHUP:
            self.schedule_catchup()

    def on_disconnect(self) -> None:
        was_lagging = self.mode == CATCHUP
        self.mode = CLOSED
        self.hub.detach(self, was_lagging)

    # ---- catch-up from the log ----

    def schedule_catchup(self) -> None:
        if not self.scheduled and self.mode == CATCHUP:
            self.scheduled = True
            self.hub.loop.call_soon(self._catch_up)

    def _catch_up(self) -> None:
        self.scheduled = False
        if self.mode != CATCHUP:
            return
        hub = self.hub
        if self.conn.write_paused:
            return  # on_resume reschedules
        log = hub.log
        target = hub.published_seq
        if self.pos + 1 < log.first_seq:
            self.end("evicted")  # what it still needs was dropped by retention
            return
        if hub.published_bytes - self.pos_bytes > hub.max_lag_bytes:
            self.end("evicted")
            return
        if self.native is not None:
            self._catch_up_native(target)
            return
        if self.scan is not None:
            self._catch_up_scan(target)
            return
        out: list[bytes] = []
        append = out.append
        size = 0
        matches = self.matches
        encode = self.encoder or hub.encode
        start = self.pos
        pos = start
        last = None
        finished_limit = False
        limited = self.limit_left > 0
        examined = 0
        for record in log.read_from(start + 1, until=target):
            examined += 1
            if examined > CATCHUP_PY_RECORDS:
                break  # `record` is not examined: the slice ends at the one before it
            if matches(record):
                frame = encode(record)
                append(frame)
                size += len(frame)
                last = record
                if limited:
                    self.limit_left -= 1
                    if self.limit_left == 0:
                        finished_limit = True
                        break
                if size >= CATCHUP_SLICE_BYTES:
                    break
        else:
            record = None
        # where this slice stopped: the last record examined, or the target when the log was read to it
        if record is None:
            pos = target
        elif examined > CATCHUP_PY_RECORDS:
            pos = record.seq - 1
        else:
            pos = record.seq
        self.pos = pos
        self.pos_bytes += (pos - start) * RECORD_OVERHEAD + size  # an estimate of the log read, for --max-lag
        if last is not None:
            self.last = (last.seq, last.user)
        if out:
            self.transport.write(self.framing(b"".join(out)))  # one chunk for the whole slice
            hub.metrics.deliveries_total += len(out)
            hub.metrics.delivered_bytes_total += size
        self.tick = hub.tick
        if finished_limit:
            self.end("limit")
            return
        self._after_slice(pos)

    def _catch_up_scan(self, target: int) -> None:
        """_catch_up with the records found in C (engine/pubsub/history.py): at most CATCHUP_SCAN_RECORDS examined
        and about CATCHUP_SLICE_BYTES written per turn, however sparse the matches."""
        hub = self.hub
        start = self.pos
        limited = self.limit_left > 0
        max_hits = min(self.limit_left, 4096) if limited else 4096
        page = history.scan(hub.log, start + 1, target, self.scan, budget=CATCHUP_SCAN_RECORDS, max_hits=max_hits)
        encode = self.encoder or hub.encode
        out: list[bytes] = []
        size = 0
        last = None
        pos = page.last if not page.complete else target
        for record in page.records:
            frame = encode(record)
            out.append(frame)
            size += len(frame)
            last = record
            if size >= CATCHUP_SLICE_BYTES and record is not page.records[-1]:
                pos = record.seq  # the rest of the page is read again next turn
                break
        if limited:
            self.limit_left -= len(out)
        self.pos = pos
        self.pos_bytes += (pos - start) * RECORD_OVERHEAD + size
        if last is not None:
            self.last = (last.seq, last.user)
        if out:
            self.transport.write(self.framing(b"".join(out)))
            hub.metrics.deliveries_total += len(out)
            hub.metrics.delivered_bytes_total += size
        self.tick = hub.tick
        if limited and self.limit_left == 0:
            self.end("limit")
            return
        self._after_slice(pos)

    def _catch_up_native(self, target: int) -> None:
        """_catch_up for the simple case (see native_filter): raw log slices through sseReplay, frames written as
        one chunk; the same slice budget, positions, metrics and lag estimate as the Python loop."""
        global _replayer
        hub = self.hub
        rep = _replayer
        if rep is None or rep.soft_max < CATCHUP_SLICE_BYTES:  # room for the budget + one frame: always progress
            rep = _replayer = Replayer(CATCHUP_SLICE_BYTES)
        rep.reset()
        filt = self.native
        start = self.pos
        pos = target  # when the log is read to the target
        size = 0
        frames = 0
        last = None
        examined = start
        walked = 0
        feed = rep.feed
        try:
            for _first, last_seq, view in hub.log.read_raw(start + 1, until=target):
                more, _consumed, seq, n, fseq, fuser = feed(view, target, filt, CATCHUP_SLICE_BYTES - size)
                if seq:
                    examined = seq
                if n:
                    frames += n
                    last = (fseq, fuser)
                size = rep.fill
                if more:  # the slice budget is spent: stop at the last record examined
                    pos = examined
                    break
                walked += len(view)
                if walked >= CATCHUP_SCAN_BYTES and min(last_seq, target) < target:
                    pos = min(last_seq, target)  # this turn walked enough log: the slice was read to its end
                    break
            data = rep.take() if size else b""
        finally:
            rep.reset()
        self.pos = pos
        self.pos_bytes += (pos - start) * RECORD_OVERHEAD + size  # an estimate of the log read, for --max-lag
        if last is not None:
            self.last = last
        if data:
            self.transport.write(self.framing(data))  # one chunk for the whole slice
            hub.metrics.deliveries_total += frames
            hub.metrics.delivered_bytes_total += size
        self.tick = hub.tick
        self._after_slice(pos)

    def _after_slice(self, pos: int) -> None:
        hub = self.hub
        if pos >= hub.published_seq:
            if self.end_on_history:
                self.end("history")
                return
            self.mode = LIVE  # caught up: every later event arrives through publish
            hub.rejoined(self)
            return
        self.schedule_catchup()

    # ---- ending ----

    def last_id(self) -> str | None:
        if self.last is None:
            return None
        seq, user = self.last
        return f"{encode_seq(seq)}.{user}"

    def end(self, reason: str) -> None:
        """Send `event: end` with the reason, finish the body and close; the hub forgets us on disconnect."""
        if self.transport.is_closing():
            return
        if self.queue:
            self.flush()
        was_lagging = self.mode == CATCHUP
        self.mode = CLOSED
        data = b"" if self.quiet else self.framing(end_frame(reason, self.last_id()))
        if self.framing is chunk:
            data += END_OF_BODY
        self.transport.write(data)
        self.transport.close()
        if reason == "evicted":
            self.hub.metrics.evictions_total += 1
        self.hub.detach(self, was_lagging)

    def keepalive(self) -> None:
        if self.mode != CLOSED and not self.transport.is_closing():
            self.transport.write(self.framing(KEEPALIVE))
            self.tick = self.hub.tick
