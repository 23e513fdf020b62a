"""A response body written in slices, one per loop turn, only while the peer reads: for answers too large to
build whole (/get of a large storage, the history of a stream before it turns live).

It is what a StreamResponse's `start(conn)` returns: the connection (connection.py) then owns no more of the
body and calls `on_pause` / `on_resume` / `on_disconnect` as its transport's buffer fills, drains or goes.

What must stay true:
- at most one slice (about `slice_bytes`, the producer's budget) is made per loop turn, and none while the
  transport is paused: the bytes queued for a slow reader stay about one slice over the high-water mark, and
  other connections are served between slices;
- `produce(budget)` returns (bytes, done); it is never called again after done, after a disconnect or after
  `stop()`;
- at the end the body is finished (the last chunk when chunked) and the connection closed, unless `then`
  hands the connection on: `then(conn)` returns the next stream object (a live Subscription), to which later
  flow-control calls are forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .sse import END_OF_BODY, chunk

log = logging.getLogger("homestream.http")

SLICE_BYTES = 64 * 1024


class PacedBody:
    __slots__ = ("conn", "transport", "produce", "chunked", "then", "slice_bytes", "done", "scheduled", "next",
                 "loop")

    def __init__(self, conn: Any, produce: Callable[[int], tuple[bytes, bool]], *, chunked: bool,
                 then: Callable[[Any], Any] | None = None, slice_bytes: int = SLICE_BYTES):
        self.conn = conn
        self.transport = conn.transport
        self.produce = produce
        self.chunked = chunked
        self.then = then
        self.slice_bytes = slice_bytes
        self.done = False
        self.scheduled = False
        self.next: Any = None  # the stream object the connection was handed on to
        self.loop = asyncio.get_event_loop()

    def start(self, first: bytes = b"") -> "PacedBody":
        """Write `first` (already made), then go on producing on later loop turns."""
        if first:
            self._write(first)
        self._schedule()
        return self

    def _write(self, data: bytes) -> None:
        self.transport.write(chunk(data) if self.chunked else data)

    def _schedule(self) -> None:
        if not self.scheduled and not self.done:
            self.scheduled = True
            self.loop.call_soon(self._step)

    def _step(self) -> None:
        self.scheduled = False
        if self.done or self.next is not None:
            return
        if self.transport.is_closing():
            self.done = True
            return
        if self.conn.write_paused:
            return  # on_resume reschedules
        try:
            data, finished = self.produce(self.slice_bytes)
        except Exception:
            log.exception("producing a paced answer")
            self.done = True
            self.transport.close()  # the head is sent: a cut body is all that is left to say it failed
            return
        if data:
            self._write(data)
        if not finished:
            self._schedule()
            return
        self.done = True
        if self.then is not None:
            self.next = self.then(self.conn)
            if self.next is not None:
                return
        if self.chunked:
            self.transport.write(END_OF_BODY)
        self.transport.close()

    def stop(self) -> None:
        self.done = True

    # ---- flow control (called by the connection) ----

    def on_pause(self) -> None:
        if self.next is not None:
            self.next.on_pause()

    def on_resume(self) -> None:
        if self.next is not None:
            self.next.on_resume()
        else:
            self._schedule()

    def on_disconnect(self) -> None:
        self.done = True
        if self.next is not None:
            self.next.on_disconnect()
