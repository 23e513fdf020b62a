"""`Min-Seq: <seq or event id>` (SPEC 5.3): answer a request only once this node has applied that seq.

A client that wrote on the origin and reads on a replica names its write's seq (or Event-Id); the node answers
at once if its released seq (App.durable_seq: durable here, and on a cluster origin also taken by JetStream)
has reached it, else holds the request up to `min_seq_wait` and then answers `503` with `Retry-After`.
Invariants: a held request is answered exactly once, by `release` or by its timer, whichever comes first; the
handler runs only after the seq is reached, so its answer reflects at least that seq; a malformed header is a
400 and never waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from typing import Any

from ..errors import BadRequest, InvalidName
from ..http.message import Request, Response, error_response
from ..http.offload import Deferred
from ..names import parse_resume_point

HEADER = b"min-seq"


def parse_min_seq(value: bytes) -> int:
    """The seq a Min-Seq header names: a decimal seq, a 13-character seq or an event id (SPEC 1)."""
    try:
        return parse_resume_point(value.decode("ascii").strip())
    except (UnicodeDecodeError, InvalidName):
        raise BadRequest(f"Min-Seq must be a seq or an event id, not {value[:80]!r}") from None


def unavailable(seq: int, applied: int, wait: float) -> Response:
    response = error_response(503, "unavailable",
                              f"this node has applied seq {applied}, not yet {seq}; retry, or read from the origin")
    response.headers.append((b"retry-after", b"%d" % max(1, math.ceil(wait))))
    return response


class SeqWaiters:
    """Requests held until the node's released seq reaches their Min-Seq."""

    def __init__(self, app: Any, max_wait: float):  # the App (engine/app.py), which imports this module
        self.app = app
        self.max_wait = max_wait
        self._heap: list[tuple[int, int, Deferred, Any]] = []
        self._ids = itertools.count()
        self.timeouts_total = 0

    def __len__(self) -> int:
        return len(self._heap)

    def check(self, request: Request) -> "Response | Deferred | None":
        """None: go on with the request now. Otherwise the 400/503 answer, or a Deferred answered later."""
        seq = parse_min_seq(request.headers[HEADER])
        applied = self.app.durable_seq()
        if seq <= applied:
            return None
        if self.max_wait <= 0:
            self.timeouts_total += 1
            return unavailable(seq, applied, 1)
        loop = asyncio.get_running_loop()
        deferred = Deferred(request)
        entry_id = next(self._ids)
        timer = loop.call_later(self.max_wait, self._expire, entry_id)
        heapq.heappush(self._heap, (seq, entry_id, deferred, timer))
        return deferred

    def release(self, applied: int) -> None:
        """The node has applied (and released) up to `applied`: answer every request waiting for no more."""
        heap = self._heap
        while heap and heap[0][0] <= applied:
            _seq, _i, deferred, timer = heapq.heappop(heap)
            timer.cancel()
            self._finish(deferred, self.app._dispatch(deferred.request))

    def _expire(self, entry_id: int) -> None:
        for i, (seq, eid, deferred, _timer) in enumerate(self._heap):
            if eid == entry_id:
                self._heap[i] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                self.timeouts_total += 1
                self._finish(deferred, unavailable(seq, self.app.durable_seq(), self.max_wait))
                return

    @staticmethod
    def _finish(deferred: Deferred, response: Any) -> None:
        if deferred.on_done is not None:
            deferred.on_done(deferred.request, response)
