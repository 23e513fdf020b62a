"""One asyncio Protocol per TCP connection, driving h11: the only HTTP module that touches a transport.

Flow: bytes -> h11 events -> a Request -> `app.handle(request)` (synchronous, no task per request) -> a Response
framed by h11 -> written once the log is durable up to the response's `durable_seq`. Because h11 is sans-IO, a
write's response is framed at once and the next pipelined request is parsed while the group commit is pending,
so pipelined writes share one fsync. A plain GET the read cache holds (engine/api/read_cache.py) is answered
with the cached bytes at its end, before any Request is made. Invariants:
- responses leave in request order: once one waits for durability, every later one queues behind it;
- limits are enforced before work: request line (414), head (431), body from Content-Length before reading it or
  as soon as a chunked body passes it (413); a framing error is answered once and the connection closed; a request
  with both Content-Length and Transfer-Encoding (400) or an HTTP version other than 1.0/1.1 (505) is refused when
  h11 hands over its head (RFC 9112 6.1: never guess where such a body ends);
- request bodies in flight share the server's `body_budget_bytes` (Server.reserve_body): a Content-Length body
  reserves its length when its head is read, a chunked one as it arrives (small bodies have a reserve past it);
  past the budget the request is answered 503 with Retry-After and closed; the reservation is released when the
  body is handed over or the connection goes;
- output back-pressure: while the transport is paused for writing, or responses waiting for a commit hold more than
  the transport's high-water mark (or MAX_PENDING_RESPONSES of them), nothing more is parsed or answered and
  reading stops; so a connection holds at most about one response over the high-water mark, whatever it pipelines;
- timers (one TimerHandle per connection, deadline moved lazily by `_arm` and the body arithmetic): `header_timeout`
  from the connection's start or the first byte of a later request head, never re-armed by further bytes (408);
  a body must arrive within `header_timeout` plus one second per `body_min_rate` bytes received, and within
  `body_timeout` in all (408); `idle_timeout` between requests; `send_timeout` while output is paused and the
  peer reads none of it (checked each send_timeout; the connection is then aborted, its queued bytes dropped);
- a body over LARGE_BODY leaves as a write of its own after its head, never copied behind it (nor cached);
- a StreamResponse (SSE) takes the transport over: later bytes from the peer are discarded;
- while a request waits for its signature check (a Deferred, engine/http/offload.py) the connection parses
  nothing more and stops reading once more bytes arrive, so requests are handled one at a time, in order;
- in a worker of `serve --workers N` (`app.fresh` set), a request that is not a write and follows a write whose
  answer still waits for the follower is handled only once that write is applied (read your writes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from http import HTTPStatus
from typing import Any, Protocol

import h11

from ..errors import ClientError
from .message import (Request, Response, StreamResponse, encode_header_lines, encode_response_head, parse_target,
                      raw_error_bytes, splice_head)
from .offload import Deferred
from .router import route



class Host(Protocol):
    """What a connection uses of the server that accepted it (engine/server.py's Server): typed here so that
    this module does not import server.py, which imports it."""

    app: Any
    settings: Any
    loop: asyncio.AbstractEventLoop

    def admit(self, conn: "HttpConnection") -> bool: ...

    def forget(self, conn: "HttpConnection") -> None: ...

    def wait_for_commit(self, conn: "HttpConnection") -> None: ...

    timer_step: float  # the shortest request timeout (see HttpConnection._schedule)

    def reserve_body(self, size: int, whole: int) -> bool: ...

    def release_body(self, size: int) -> None: ...


log = logging.getLogger("homestream.http")

REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
MAX_PENDING_RESPONSES = 256  # pipelined responses waiting for a commit before we stop parsing
DEFAULT_HIGH_WATER = 64 * 1024  # a transport that cannot tell its write-buffer limits: uvloop's default
_END = h11.EndOfMessage()
FAST_CYCLE_MAX = 64 * 1024  # the most unparsed bytes a new h11 cycle object may copy (see _send_response)
LARGE_BODY = 256 * 1024  # a body larger than this leaves as a write of its own, never copied behind its head
_SINGLE_VALUED = (b"authorization", b"content-type", b"last-event-id")  # repeated: the last one wins
_HEAD_EVENTS: dict[tuple[int, int, bool], h11.Response] = {}
_HEAD_EVENTS_MAX = 4096


def _head_event(status: int, length: int, close: bool) -> h11.Response:
    """The h11 event that frames a response: status, Content-Length (none when length < 0) and, when asked,
    Connection: close. Events are immutable, so one per (status, length, close) serves every connection."""
    key = (status, length, close)
    event = _HEAD_EVENTS.get(key)
    if event is None:
        headers = [] if length < 0 else [(b"content-length", b"%d" % length)]
        if close:
            headers.append((b"Connection", b"close"))  # h11 then closes after it; spelt as h11 adds it
        event = h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
        if len(_HEAD_EVENTS) >= _HEAD_EVENTS_MAX:
            _HEAD_EVENTS.clear()
        _HEAD_EVENTS[key] = event
    return event


_WRITE_HANDLERS = frozenset(("storage_put", "storage_delete", "storage_post", "seed_set"))


def _is_write(event: h11.Request) -> bool:
    """True for a request a worker forwards to the writer (PUT, DELETE, a collection POST, /set/)."""
    method = event.method
    if method in (b"GET", b"HEAD", b"OPTIONS"):
        return False
    try:
        path, _query = parse_target(event.target)
        return route(method.decode("ascii"), path).handler in _WRITE_HANDLERS
    except (ClientError, UnicodeDecodeError):
        return False


def _framing_length(response: Response) -> tuple[int, list[tuple[bytes, bytes]]]:
    """(Content-Length to frame, -1 for none; the other headers). A HEAD answer names the GET's length."""
    length = -1 if response.status in (204, 304) else len(response.body)
    others = []
    for header in response.headers:
        if header[0] == b"content-length":
            length = int(header[1])
        else:
            others.append(header)
    return length, others


class HttpConnection(asyncio.Protocol):
    __slots__ = ("server", "app", "settings", "conn", "transport", "peer", "pending", "body",
                 "stream", "timer", "write_paused", "read_paused", "closed", "head_bytes", "_timer_kind",
                 "head", "close_after_response", "deadline", "deferred", "unparsed_bound", "pending_bytes",
                 "backlogged", "queue_limit", "reserved", "body_base", "body_cap", "paused_at", "_saved_timer",
                 "timer_at", "send_mark")

    def __init__(self, server: Host):
        self.server = server
        self.app = server.app
        self.settings = server.settings
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = None
        self.pending: collections.deque[tuple[bytes, int, Any]] = collections.deque()
        self.head: tuple[h11.Request, dict[bytes, bytes]] | None = None  # the request being read: event, headers
        self.body: bytearray | None = None
        self.stream: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # loop time `timer` fires: never after `deadline`, often before (see _schedule)
        self.deadline = 0.0  # loop time at which the armed `_timer_kind` expires
        self._timer_kind = ""
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self.close_after_response = False
        self.head_bytes = 0  # bytes of the current request head seen so far (for the 414 probe)
        self.deferred: Deferred | None = None  # the request whose signature check is pending
        self.unparsed_bound = 0  # at least as many bytes as h11 holds unparsed (see _send_response)
        self.pending_bytes = 0  # bytes of the responses in `pending`
        self.backlogged = False  # `pending` is past queue_limit bytes or MAX_PENDING_RESPONSES: parse nothing more
        self.queue_limit = DEFAULT_HIGH_WATER  # the transport's high-water mark, read once it is known
        self.reserved = 0  # bytes of the server's body budget this connection holds for the body being read
        self.body_base = 0.0  # the body's deadline before any byte (end of its grace), and the latest it may end
        self.body_cap = 0.0
        self.paused_at = 0.0  # loop time writing was paused, and the (kind, deadline) the send timer displaced
        self._saved_timer: tuple[str, float] = ("", 0.0)
        self.send_mark = 0  # bytes queued in the transport when the send timer was last armed (see _arm_send)

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        if not self.server.admit(self):
            transport.write(raw_error_bytes(503, "unavailable", "too many connections"))
            transport.close()
            self.closed = True
            return
        limits = getattr(transport, "get_write_buffer_limits", None)
        if limits is not None:
            self.queue_limit = limits()[1]
        self._arm("header")  # the first request's head is timed from the connection's start

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self._release_body()
        self.server.forget(self)
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.on_disconnect()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.stream is not None:
            self.stream.on_pause()
            return
        self._pause_reading()
        if self.closed:
            return  # _close already runs the send timer for what is left to flush
        self.paused_at = self.server.loop.time()
        self._saved_timer = (self._timer_kind, self.deadline)
        self._arm_send()  # the peer must read within send_timeout; the request timers wait meanwhile

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stream is not None:
            if self._timer_kind == "send":  # armed before the stream took over (its first write paused)
                if self.transport.is_closing():
                    self._arm_send()  # a finite stream written whole, flushing: the peer read some, go on
                else:
                    self._stop_timer()  # a live stream: its subscription's own limits hold it from here
            self.stream.on_resume()
            return
        if self._timer_kind != "send":
            return
        if self.closed:
            self._arm_send()  # flushing before a close: the peer read something, give it send_timeout more
            return
        kind, deadline = self._saved_timer
        self._timer_kind = ""  # the send timer is done; the request timer it displaced runs again
        if kind:
            shift = self.server.loop.time() - self.paused_at  # the time the peer spent not reading is not held
            self.body_base += shift                           # against its request
            self.body_cap += shift
            self._arm(kind, deadline + shift)
        self._continue()

    def data_received(self, data: bytes) -> None:
        if self.stream is not None or self.closed:
            return  # a stream ignores what the peer sends; a closing connection reads nothing more
        self.unparsed_bound += len(data)
        if self.deferred is not None or self.write_paused or self.backlogged:
            self.conn.receive_data(data)  # kept for when the connection may go on; read no more until then
            self._pause_reading()
            return
        if self.conn.their_state is h11.IDLE:
            if not self._probe_request_line(data):
                return
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        """The peer closed its sending side. Answers still owed (a request waiting for its signature check or for
        the commit of its write) are sent first: returning True keeps the transport open until `_close`."""
        if self.stream is None and not self.closed:
            self.conn.receive_data(b"")
            if self.deferred is None:
                self._process()
        return self.stream is None and (self.deferred is not None or bool(self.pending) or self.write_paused
                                        or self.backlogged)

    # ---- request processing ----

    def _probe_request_line(self, data: bytes) -> bool:
        """414 for a request line longer than the limit, before h11 buffers it all."""
        limit = self.settings.max_request_line
        if self._timer_kind != "header":
            self._arm("header")
            self.head_bytes = 0
        end = data.find(b"\n")
        seen = self.head_bytes + (len(data) if end < 0 else end)
        self.head_bytes += len(data)
        if seen > limit + 1:
            self._fail(414, "uri_too_long", f"request line longer than {limit} bytes")
            return False
        return True

    def _process(self) -> None:
        while not self.closed and self.stream is None and self.deferred is None:
            if self.write_paused or self.backlogged:
                self._pause_reading()  # back-pressure: parse and answer nothing more until the output drains
                return
            conn = self.conn  # a response may start a new h11 cycle object (see _send_response)
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                code = "headers_too_large" if status == 431 else "bad_request"
                self._fail(status, code, f"malformed request: {exc}")
                return
            etype = type(event)
            if etype is h11.Request:
                if not self._begin(event):
                    return
            elif etype is h11.Data:
                body = self.body
                body += event.data  # type: ignore[operator]
                size = len(body)  # type: ignore[arg-type]
                if size > self.reserved:  # a chunked body: reserve what arrived (a Content-Length one holds it all)
                    if size > self.settings.max_body_bytes:
                        self._fail(413, "payload_too_large",
                                   f"body larger than {self.settings.max_body_bytes} bytes")
                        return
                    if not self.server.reserve_body(size - self.reserved, size):
                        self._refuse_body()
                        return
                    self.reserved = size
                # the body's deadline: a grace, one more second per body_min_rate bytes, never past body_cap
                deadline = self.body_base + size / self.settings.body_min_rate
                self.deadline = deadline if deadline < self.body_cap else self.body_cap
            elif etype is h11.EndOfMessage:
                self._finish_request()
                if self.unparsed_bound == 0 and self.conn.their_state is h11.IDLE:
                    # a fresh cycle with nothing buffered (not even an end of stream): h11 would say NEED_DATA
                    if not self._timer_kind and not self.closed:
                        self._arm("idle")
                    return
            elif event is h11.NEED_DATA:
                # h11 holds no complete event now: at most one partial head or chunk line, which it caps
                self.unparsed_bound = min(self.unparsed_bound, self.settings.max_header_bytes)
                if conn.their_state is h11.IDLE and not self._timer_kind:
                    # between requests; a head already begun (pipelined behind the last one) is timed as one
                    self._arm("header" if conn.trailing_data[0] else "idle")
                return
            elif event is h11.PAUSED:
                return
            elif etype is h11.ConnectionClosed:
                if self.pending:  # the peer is done sending: answer what is owed, then close
                    self._close_after(self.pending[-1][1])
                else:
                    self._close()
                return

    def _begin(self, event: h11.Request) -> bool:
        limit = self.settings.max_request_line
        if len(event.method) + len(event.target) + 10 > limit:
            self._fail(414, "uri_too_long", f"request line longer than {limit} bytes")
            return False
        head_size = len(event.method) + len(event.target) + 12
        headers: dict[bytes, bytes] = {}
        for name, value in event.headers:
            head_size += len(name) + len(value) + 4
            if name in headers and name not in _SINGLE_VALUED:
                headers[name] = headers[name] + b", " + value
            else:
                headers[name] = value
        if head_size > self.settings.max_header_bytes:
            self._fail(431, "headers_too_large", f"request head larger than {self.settings.max_header_bytes} bytes")
            return False
        version = event.http_version
        if version != b"1.1" and version != b"1.0":
            self._fail(505, "http_version_not_supported", "only HTTP versions 1.0 and 1.1 are served here")
            return False
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if chunked and (length is not None or version == b"1.0"):
            self._fail(400, "bad_request", "Transfer-Encoding with Content-Length or in HTTP/1.0 (RFC 9112 6.1)")
            return False
        if length is not None:
            size = int(length)
            if size > self.settings.max_body_bytes:
                self._fail(413, "payload_too_large", f"body larger than {self.settings.max_body_bytes} bytes")
                return False
            if size:
                if not self.server.reserve_body(size, size):
                    self._refuse_body()
                    return False
                self.reserved = size
            chunked = size > 0
        self.head = (event, headers)  # the Request is made at its end, unless the read cache answers it
        self.body = bytearray()
        if chunked:  # a body follows: time it from here, with a grace as long as a head may take
            s = self.settings
            now = self.server.loop.time()
            self.body_base = now + s.header_timeout
            self.body_cap = now + s.body_timeout
            self._arm("body", self.body_base if self.body_base < self.body_cap else self.body_cap)
        if self.conn.they_are_waiting_for_100_continue:
            self.transport.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        return True

    def _refuse_body(self) -> None:
        """The server's body budget cannot take this body (Server.reserve_body): 503, retry later, and close."""
        self._fail(503, "unavailable", "too many request bodies in flight; retry shortly", ((b"retry-after", b"1"),))

    def _release_body(self) -> None:
        if self.reserved:
            self.server.release_body(self.reserved)
            self.reserved = 0

    def _finish_request(self) -> None:
        assert self.head is not None and self.body is not None
        event, headers = self.head
        body = self.body
        self.head = None
        self.body = None
        if self.reserved:
            self.server.release_body(self.reserved)
            self.reserved = 0
        fresh = self.app.fresh
        if fresh is not None:
            fresh()  # a worker of `serve --workers N`: apply what the writer made durable first (read your writes)
            if self.pending and not _is_write(event):
                need = max(entry[1] for entry in self.pending)
                if need > self.app.durable_seq():
                    self._after_own_writes(event, headers, bytes(body), need)
                    return
        self._handle(event, headers, body)

    def _handle(self, event: h11.Request, headers: dict[bytes, bytes], body: bytes | bytearray) -> None:
        if event.method == b"GET" and self._answer_from_cache(event.target, headers):
            return
        request, error = self._make_request(event, headers, bytes(body))
        response = self.app.handle(request, error)
        if type(response) is Deferred:
            self.deferred = response
            response.on_done = self._finish_deferred
            return
        self._respond(request, response)

    def _after_own_writes(self, event: h11.Request, headers: dict[bytes, bytes], body: bytes, need: int) -> None:
        """A worker acknowledges a write once its follower has applied it; a read after a write on this connection
        must see it, so it is handled only then: queued behind the write's answer, parsing nothing more meanwhile
        (as for a Deferred). Writes are not held: the writer orders them, so pipelined writes share commits."""
        self.deferred = Deferred(None)

        def resume() -> None:
            self.deferred = None
            if self.closed:
                return
            self._handle(event, headers, body)
            self._go_on()

        self._emit(b"", need, resume)

    def _respond(self, request: Request, response: Response | StreamResponse) -> None:
        if type(response) is StreamResponse:
            self._start_stream(request, response)
        else:
            self._send_response(request, response)

    def _make_request(self, event: h11.Request, headers: dict[bytes, bytes],
                      body: bytes) -> tuple[Request, ClientError | None]:
        """The Request for the handler, and the target's error (InvalidName...) for it to answer, if any."""
        try:
            method = event.method.decode("ascii")
            path, query = parse_target(event.target)
        except ClientError as exc:
            method = event.method.decode("ascii", "replace")
            return Request(method, event.target, "", [], headers, body, event.http_version, self.peer), exc
        return Request(method, event.target, path, query, headers, body, event.http_version, self.peer), None

    def _answer_from_cache(self, target: bytes, headers: dict[bytes, bytes]) -> bool:
        """Answer a plain GET from the read cache (engine/api/read_cache.py) on the fast path: the bytes
        `_send_response` would frame from storage_get's answer, without making a Request or running either. A
        target the cache holds parsed cleanly when it was stored. False: not held."""
        cache = self.app.read_cache
        if (cache is None or self.close_after_response or self.unparsed_bound > FAST_CYCLE_MAX
                or self.conn.their_state is not h11.DONE or not cache.plain(headers)):
            return False
        data = cache.lookup(target)
        if data is None:
            return False
        if self.app.fast_admit is not None and not self.app.fast_admit(self.peer, headers):
            return False  # over the client's request rate (engine/policy): the ordinary path answers 429
        self._send_fast(data, 200, 0, False)
        return True

    def _finish_deferred(self, request: Request, response: Response | StreamResponse) -> None:
        """The signature check came back and the handler ran: answer, then go on with buffered requests."""
        self.deferred = None
        if self.closed:
            return  # the peer went away meanwhile: the handler's work stands, the answer has no one to go to
        if type(response) is Deferred:  # the handler handed the write on (a worker to its writer): wait again
            self.deferred = response
            response.on_done = self._finish_deferred
            return
        self._respond(request, response)
        self._go_on()

    def _go_on(self) -> None:
        """After an answer that was waited for: read and parse the requests that came meanwhile."""
        if self.closed or self.stream is not None or self.deferred is not None:
            return
        if self.conn.their_state is h11.MUST_CLOSE or self.transport.is_closing():
            return
        self._continue()

    # ---- responses ----

    def _send_response(self, request: Request, response: Response) -> None:
        """Frame and queue a whole response, then start the next request cycle.

        Fast path: the head comes from message.encode_response_head (h11's very bytes, tested against it) and
        the next request is parsed by a fresh h11.Connection holding the old one's unparsed bytes
        (`trailing_data`). It needs their_state DONE, which is h11 saying the request keeps the connection (an
        HTTP/1.0 or `Connection: close` request leaves it MUST_CLOSE, and takes h11's own path), and it costs a
        copy of the unparsed bytes, so it is taken only while `unparsed_bound` says they are few: a long
        pipelined burst goes through h11's send path until h11 has drained it."""
        conn = self.conn
        fast = self.unparsed_bound <= FAST_CYCLE_MAX and conn.their_state is h11.DONE
        close = self.close_after_response  # on the fast path, only our own shutdown closes
        large = (fast and len(response.body) > LARGE_BODY and request.method != "HEAD"
                 and response.status not in (204, 304))
        try:
            if fast:
                data = self._frame_fast(request, response, close, not large)
            else:
                data = self._frame(request, response)
        except Exception:  # a handler produced a response h11 refuses: never let it reach the transport
            log.exception("cannot frame the response to %s %s", request.method, request.path)
            self._fail(500, "internal_error", "internal server error")
            return
        if fast:
            cache = self.app.read_cache
            if large:  # the head, then the body as it is: no copy of it (and far past what the cache keeps)
                self._send_fast(data, response.status, response.durable_seq, close, response.body)
                return
            if (response.cache_tag is not None and cache is not None and not close and request.method == "GET"
                    and cache.plain(request.headers)):
                cache.store(request.raw_target, response.cache_tag, data)
            self._send_fast(data, response.status, response.durable_seq, close)
            return
        self.app.metrics.response(response.status)
        self._emit(data, response.durable_seq, None)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self._close_after(response.durable_seq)
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            self._close_after(response.durable_seq)
            return
        self._cancel_timer()

    def _send_fast(self, data: bytes, status: int, durable_seq: int, close: bool, body: bytes = b"") -> None:
        """Queue a response framed without h11 (by _frame_fast, or kept by the read cache; a large body apart,
        after it), then close after it or start the next request cycle."""
        self.app.metrics.response(status)
        self._emit(data, durable_seq, None)
        if body:
            self._emit(body, durable_seq, None)
        if close:
            self._close_after(durable_seq)
            return
        self._next_cycle()
        self._cancel_timer()

    def _close_after(self, durable_seq: int) -> None:
        """Read nothing more; close once everything queued up to durable_seq has been sent."""
        self._emit(b"", durable_seq, self._close)
        self.closed = True

    def _next_cycle(self) -> None:
        """A new h11.Connection for the next request, holding the bytes the old one had not parsed yet."""
        data, closed = self.conn.trailing_data
        conn = self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header_bytes)
        self.unparsed_bound = len(data) + closed  # 0 only when there is nothing at all to read yet
        if data:
            conn.receive_data(data)
        if closed:
            conn.receive_data(b"")

    def _frame_fast(self, request: Request, response: Response, close: bool, with_body: bool = True) -> bytes:
        """The same bytes as _frame, without h11: head, headers, blank line, body (none for HEAD/204/304, and
        none when not `with_body`: the caller then sends it after these bytes)."""
        status = response.status
        body = response.body
        length, others = _framing_length(response)
        head = encode_response_head(status, REASONS.get(status, b""), length, close)
        data = head + encode_header_lines(others) + self.app.cors_lines(request) + b"\r\n"
        if body and request.method != "HEAD" and status not in (204, 304):
            if len(body) != length:
                raise ValueError(f"body of {len(body)} bytes under Content-Length {length}")
            if with_body:
                data += body
        return data

    def _frame(self, request: Request, response: Response) -> bytes:
        """The bytes of a whole response (HEAD/204/304 without a body). h11 frames it: it is sent a cached event
        with only the framing headers, so it picks the status line, Content-Length and Connection: close and
        keeps its state exact; the handler's and CORS headers, checked by encode_header_lines, are spliced in."""
        conn = self.conn
        status = response.status
        body = response.body
        length, others = _framing_length(response)
        head = conn.send(_head_event(status, length, self.close_after_response))
        data = splice_head(head, encode_header_lines(others) + self.app.cors_lines(request))
        if body and request.method != "HEAD" and status not in (204, 304):
            data += conn.send(h11.Data(data=body))
        return data + conn.send(_END)

    def _start_stream(self, request: Request, response: StreamResponse) -> None:
        headers = response.headers
        headers.extend(self.app.cors(request))
        head = self.conn.send(h11.Response(status_code=response.status, headers=headers,
                                           reason=REASONS.get(response.status, b"")))
        self.app.metrics.response(response.status)
        self._cancel_timer()

        def begin() -> None:
            if not self.closed:
                self.stream = response.start(self)

        self._emit(head, response.durable_seq, begin)

    def _emit(self, data: bytes, durable_seq: int, after: Any) -> None:
        """Write now if nothing waits ahead and the log covers durable_seq; else queue behind."""
        if not self.pending and durable_seq <= self.app.durable_seq():
            if data:
                self.transport.write(data)
            if after is not None:
                after()
            return
        self.pending.append((data, durable_seq, after))
        self.server.wait_for_commit(self)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.queue_limit or len(self.pending) >= MAX_PENDING_RESPONSES:
            self.backlogged = True  # _process stops at its next event; on_commit lets it go on

    def on_commit(self, durable_seq: int) -> bool:
        """Called by the server after a commit; returns True when nothing is left waiting."""
        pending = self.pending
        chunks = []
        while pending and pending[0][1] <= durable_seq:
            data, _, after = pending.popleft()
            if data:
                self.pending_bytes -= len(data)
                chunks.append(data)
            if after is not None:
                if chunks:
                    self.transport.writelines(chunks)
                    chunks = []
                after()
        if chunks and not self.transport.is_closing():
            self.transport.writelines(chunks)
        if self.backlogged and self.pending_bytes <= self.queue_limit and len(pending) < MAX_PENDING_RESPONSES:
            self.backlogged = False
            # not from here: this runs inside the server's commit fan-in, which a handled request may re-enter
            self.server.loop.call_soon(self._continue)
        return not pending

    def _continue(self) -> None:
        """Back-pressure lifted: read again and answer what is buffered, unless something else still holds."""
        if (self.closed or self.stream is not None or self.deferred is not None or self.write_paused
                or self.backlogged):
            return
        self._resume_reading()
        self._process()

    # ---- closing, timers, flow control ----

    def _fail(self, status: int, code: str, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer a framing or limit error once (after queued responses) and close."""
        self.app.metrics.response(status)
        self.app.metrics.protocol_errors += 1
        self._release_body()
        self._emit(raw_error_bytes(status, code, message, [*self.app.cors_for_error(), *extra]), 0, self._close)
        self.closed = True

    def _close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        if transport is not None and transport.get_write_buffer_size():
            self._arm_send()  # close() flushes first: a peer that never reads must not keep the bytes forever
        else:
            self._stop_timer()

    def shutdown(self) -> None:
        """Server shutdown: close an idle keep-alive connection now; busy ones close after their response."""
        if self.stream is not None:
            return  # streams are ended by the pubsub layer with an `end` frame
        if self.conn.their_state is h11.IDLE and not self.pending:
            self._close()
        else:
            self.close_after_response = True  # finish the request in flight, answer it with Connection: close

    def _arm(self, kind: str, deadline: float = 0.0) -> None:
        """Set the deadline for `kind` (its timeout from now, unless given). Lazy: one TimerHandle lives at a time
        and, firing early, re-arms itself for the current deadline, so a request costs attribute stores instead
        of timer objects. While the send timer runs (the peer reads nothing) the new deadline waits beside it."""
        if not deadline:
            s = self.settings
            # "body" comes here only to wait again for our own commit or check: its deadline is set in _begin
            delay = s.header_timeout if kind == "header" else s.send_timeout if kind == "send" else s.idle_timeout
            deadline = self.server.loop.time() + delay
        if self._timer_kind == "send" and kind != "send":
            self._saved_timer = (kind, deadline)  # the peer is not reading: this one runs once it does
            return
        self.deadline = deadline
        self._timer_kind = kind
        if self.timer is None or deadline < self.timer_at:
            self._schedule()

    def _arm_send(self) -> None:
        """Time the peer's reading: it must take some of what is queued for it within each send_timeout."""
        self.send_mark = self.transport.get_write_buffer_size()
        self._arm("send")

    def _schedule(self) -> None:
        """(Re)place the handle at the deadline, or sooner: never more than server.timer_step ahead (the
        shortest request timeout), so any deadline armed later is after it and moving it costs no new handle."""
        if self.timer is not None:
            self.timer.cancel()
        loop = self.server.loop
        at = loop.time() + self.server.timer_step
        if self.deadline < at:
            at = self.deadline
        self.timer_at = at
        self.timer = loop.call_at(at, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer_kind == "send":
            self._saved_timer = ("", 0.0)  # the send timer stays until the peer reads
        else:
            self._timer_kind = ""  # a pending handle finds nothing to do when it fires

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._timer_kind = ""

    def _on_timeout(self) -> None:
        self.timer = None
        kind = self._timer_kind
        if not kind or (self.stream is not None and kind != "send"):
            return
        if self.server.loop.time() < self.deadline:
            self._schedule()  # the deadline moved on since, or the handle fired a step early
            return
        self._timer_kind = ""
        if kind == "send":
            if self.transport.get_write_buffer_size() < self.send_mark:
                self._arm_send()  # the peer is reading, however slowly: it has another send_timeout
                return
            # the peer read nothing for send_timeout: drop what is queued for it, and it
            self.app.metrics.timeouts += 1
            self.closed = True
            self.transport.abort()
            return
        if self.closed or self.stream is not None:
            return
        if self.pending or self.deferred is not None:
            self._arm(kind)  # waiting for our own commit or signature check is not the peer's fault
            return
        if kind != "idle" or self.conn.their_state is not h11.IDLE:
            self.app.metrics.timeouts += 1
            what = "request body" if kind == "body" else "request head" if kind == "header" else "request"
            self._fail(408, "request_timeout", f"{what} not received in time")
        else:
            self._close()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()
