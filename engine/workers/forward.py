"""A worker's side of the channel to the writer: `WriterLink` (the connection, re-made when the writer
restarts) and `ForwardedWrites` (the worker's `app.writes`: a WriteOp goes to the writer, and its answer comes
back as the Deferred the connection waits on).

Invariants:
- the writer answers once the record is appended; the answer carries the record's seq as its `durable_seq`,
  so the connection sends it only when this worker's follower has applied that seq (durable, and visible to
  every new request on any worker), and holds a later read on the connection until then (read your writes);
- a write sent to a writer that went away before answering is answered 503 `writer_unavailable` (it may or
  may not have been appended; it was never acknowledged); one already answered still waits for its seq,
  which the restarted writer makes durable (a process crash leaves the appended record whole);
- no write is sent while the writer is down: 503 at once, with Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any, Callable

from ..http.message import Response, error_response
from ..http.offload import Deferred
from . import channel

log = logging.getLogger("homestream.worker")

RECONNECT_DELAY = 0.05


class WriterLink(asyncio.Protocol):
    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, max_frame: int,
                 on_frame: Callable[[int, int, list[bytes]], None], on_lost: Callable[[], None]):
        self.path = path
        self.loop = loop
        self.max_frame = max_frame
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.decoder = channel.Decoder(max_frame)
        self.closing = False
        self.connects_total = 0
        self._task: asyncio.Task | None = None

    @property
    def up(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def start(self) -> None:
        self._task = self.loop.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        while not self.closing and not self.up:
            try:
                await self.loop.create_unix_connection(lambda: self, self.path)
                return
            except OSError:
                await asyncio.sleep(RECONNECT_DELAY)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.decoder = channel.Decoder(self.max_frame)
        self.connects_total += 1
        log.info("worker %d: connected to the writer", os.getpid())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()
        if not self.closing:
            log.warning("worker %d: lost the writer; reconnecting", os.getpid())
            self._task = self.loop.create_task(self._connect_loop())

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ValueError as exc:
            log.error("bad frame from the writer: %s", exc)
            self.transport.close()
            return
        for request_id, op, fields in frames:
            try:
                self.on_frame(request_id, op, fields)
            except Exception:  # one bad answer must not strand the others of this read
                log.exception("handling a frame from the writer")

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        self.closing = True
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


class ForwardedWrites:
    """`app.writes` of a worker. `feed` is the worker's SegmentFeed (its `applied` seq and `catch_up`)."""

    def __init__(self, run_dir: str, feed: Any, loop: asyncio.AbstractEventLoop, max_frame: int):
        self.feed = feed
        self.loop = loop
        self.link = WriterLink(os.path.join(run_dir, "writer.sock"), loop, max_frame, self._on_frame,
                               self._on_lost)
        self._ids = itertools.count(1)
        self.sent: dict[int, tuple[Deferred, Callable]] = {}
        self.forwarded_total = 0
        self.unavailable_total = 0

    def submit(self, request: Any, op: Any, frame: Callable) -> Deferred | Response:
        if not self.link.up:
            self.unavailable_total += 1
            return _unavailable()
        request_id = next(self._ids)
        deferred = Deferred(request)
        self.sent[request_id] = (deferred, frame)
        self.link.send(channel.encode_write(request_id, op))
        self.forwarded_total += 1
        return deferred

    def _on_frame(self, request_id: int, op: int, fields: list[bytes]) -> None:
        if op == channel.OP_COMMIT:
            self.feed.fresh()
            return
        entry = self.sent.pop(request_id, None)
        if entry is None:
            return
        deferred, frame = entry
        if op == channel.OP_RESULT:
            # appended, not yet durable: the connection sends the answer once the follower has applied its seq
            # (response.durable_seq) and holds a later read until then, so the next request is read at once
            # (pipelined writes share a commit)
            _finish(deferred, frame(channel.decode_result(fields)))
        else:
            status, code, message = channel.decode_error(fields)
            _finish(deferred, error_response(status, code, message))

    def _on_lost(self) -> None:
        sent, self.sent = self.sent, {}
        for deferred, _frame in sent.values():
            self.unavailable_total += 1
            _finish(deferred, _unavailable())

    def close(self) -> None:
        self.link.close()


def _unavailable() -> Response:
    response = error_response(503, "writer_unavailable", "the writer process is restarting; retry the write")
    response.headers.append((b"retry-after", b"1"))
    return response


def _finish(deferred: Deferred, response: Any) -> None:
    if deferred.on_done is None:
        return
    try:
        deferred.on_done(deferred.request, response)
    except Exception:
        log.exception("finishing a forwarded %s %s", deferred.request.method, deferred.request.path)
