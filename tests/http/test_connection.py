"""engine.http.connection in process (a fake transport): pipelined requests cut anywhere are answered in order,
with bytes an h11 client parses, on the fast cycle path and on h11's own send path alike."""

from __future__ import annotations

import asyncio

import h11
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.config import Settings
from engine.http.connection import FAST_CYCLE_MAX, HttpConnection
from engine.names import encode_user
from engine.server import Server, build_app

USER = encode_user(b"\x11" * 32)
KEY = f"/{USER}/pub/a.txt"
VALUE = b"hello, pipelined world"


class FakeTransport:
    """Everything written lands in `out` at once (a peer that reads all), unless `stuck`: then it stays buffered,
    with pause_writing / resume_writing called as a real transport does around its high-water mark."""

    HIGH = 64 * 1024

    def __init__(self, stuck: bool = False):
        self.out: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.stuck = stuck
        self.buffered = 0
        self.paused = False
        self.reading = True
        self.protocol = None

    def write(self, data):
        self.out.append(bytes(data))
        if self.stuck:
            self.buffered += len(data)
            if self.buffered > self.HIGH and not self.paused:
                self.paused = True
                self.protocol.pause_writing()

    def writelines(self, chunks):
        for c in chunks:
            self.write(c)

    def drain(self):
        """The peer reads everything buffered."""
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def get_write_buffer_size(self):
        return self.buffered

    def get_write_buffer_limits(self):
        return (self.HIGH // 4, self.HIGH)

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = self.aborted = True

    def get_extra_info(self, name):
        return ("127.0.0.1", 9)

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)  # build_app wires the hub to the current loop
    settings = Settings(data=str(tmp_path_factory.mktemp("conn")), verify_threads=0).validate()
    app = build_app(settings)
    app.keyspace.put(USER, "/pub/a.txt", VALUE, "text/plain")
    app.log.flush()
    srv = Server(settings, app, loop)
    yield srv
    app.log.close()
    asyncio.set_event_loop(None)
    loop.close()


def etag(server) -> str:
    from engine.api.storage import etag as make_etag

    return make_etag(server.app.keyspace.get(USER, "/pub/a.txt").digest).decode()


# (method, target, extra header lines, expected status, expected body)
def cases(server):
    return [
        ("GET", "/healthz", "", 200, None),
        ("GET", KEY, "", 200, VALUE),
        ("HEAD", KEY, "", 200, b""),
        ("GET", f"/{USER}/pub/missing", "", 404, None),
        ("OPTIONS", KEY, "Origin: https://x.example\r\n", 204, b""),
        ("GET", KEY, f"If-None-Match: {etag(server)}\r\n", 304, b""),
    ]


def request_bytes(case) -> bytes:
    method, target, extra, _, _ = case
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def read_responses(out: bytes, sent: list) -> list[tuple[int, bytes]]:
    client = h11.Connection(h11.CLIENT)
    client.receive_data(out)
    got = []
    for method, target, *_ in sent:
        client.send(h11.Request(method=method, target=target, headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        head = client.next_event()
        assert type(head) is h11.Response, head
        body = b""
        while True:
            event = client.next_event()
            if type(event) is h11.EndOfMessage:
                break
            assert type(event) is h11.Data, event
            body += event.data
        got.append((head.status_code, body))
        client.start_next_cycle()
    return got


def run(server, chunks: list[bytes]) -> tuple[bool, bytes]:
    """Feed the chunks; (whether the server closed the transport, what it wrote)."""
    conn = HttpConnection(server)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)
    for chunk in chunks:
        conn.data_received(chunk)
    out, closed = b"".join(transport.out), transport.closed
    conn.connection_lost(None)
    return closed, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, 5), min_size=1, max_size=25), cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_pipelined_requests_cut_anywhere_are_answered_in_order(server, picks, cuts):
    table = cases(server)
    sent = [table[i] for i in picks]
    data = b"".join(request_bytes(c) for c in sent)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]
    _, out = run(server, chunks)
    got = read_responses(out, sent)
    assert [s for s, _ in got] == [c[3] for c in sent]
    for (status, body), case in zip(got, sent):
        if case[4] is not None:
            assert body == case[4]


def test_long_pipelined_burst_goes_through_h11_then_the_fast_path_returns(server):
    table = cases(server)
    burst = [table[i % len(table)] for i in range(1200)]
    data = b"".join(request_bytes(c) for c in burst)
    assert len(data) > FAST_CYCLE_MAX
    conn = HttpConnection(server)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)
    first = conn.conn
    conn.data_received(data)
    assert conn.conn is first  # too much unparsed for the copying cycle: h11's own send path served the burst
    conn.data_received(request_bytes(table[1]))
    assert conn.conn is not first  # bytes few again: a fresh cycle object
    got = read_responses(b"".join(transport.out), burst + [table[1]])
    assert [s for s, _ in got] == [c[3] for c in burst] + [200]
    assert got[-1][1] == VALUE


@pytest.mark.parametrize("request_line, closes", [
    ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", True),
    ("GET /healthz HTTP/1.0\r\n\r\n", True),
])
def test_connection_closes_exactly_when_h11_would(server, request_line, closes):
    """A closing request takes h11's own send path (h11 leaves it MUST_CLOSE); a keep-alive one the fast path."""
    closed, out = run(server, [request_line.encode()])
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (b"\r\nConnection: close\r\n" in out) == closes
    assert closed == closes


# ---- output back-pressure, the body budget, framing refusals (issue 21 items 1, 2, 4) ----

BIG_KEY = f"/{USER}/pub/big.bin"
BIG = bytes(range(256)) * 160  # 40 KiB: one answer stays under the 64 KiB mark, a second passes it


@pytest.fixture(scope="module")
def big(server):
    server.app.keyspace.put(USER, "/pub/big.bin", BIG, "application/octet-stream")
    server.app.log.flush()
    return BIG


def connect(server, stuck: bool = False) -> tuple[HttpConnection, FakeTransport]:
    conn = HttpConnection(server)
    transport = FakeTransport(stuck=stuck)
    transport.protocol = conn
    conn.connection_made(transport)
    return conn, transport


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def answered(transport: FakeTransport) -> int:
    return b"".join(transport.out).count(b"HTTP/1.1 200 ")


def test_a_peer_that_reads_nothing_gets_one_answer_past_the_high_water_mark(server, big):
    conn, transport = connect(server, stuck=True)
    conn.data_received(get(BIG_KEY) * 50)  # all pipelined in one read
    # 40 KiB queued is under the 64 KiB mark, so a second answer is framed; it passes the mark and nothing more is
    assert answered(transport) == 2
    assert transport.buffered <= FakeTransport.HIGH + len(BIG) + 1024
    assert not transport.reading  # and no more bytes are taken from the peer meanwhile
    sent = 2
    while sent < 50:
        transport.drain()  # the peer reads: exactly the next answers, until the mark again
        now = answered(transport)
        assert now - sent == 2 and transport.buffered <= FakeTransport.HIGH + len(BIG) + 1024
        sent = now
    transport.drain()
    assert transport.reading
    conn.data_received(get(KEY))
    got = read_responses(b"".join(transport.out), [("GET", BIG_KEY)] * 50 + [("GET", KEY)])
    assert [s for s, _ in got] == [200] * 51
    assert all(body == BIG for _, body in got[:50]) and got[50][1] == VALUE
    conn.connection_lost(None)


def test_output_under_the_high_water_mark_never_holds_a_pipeline(server, big):
    conn, transport = connect(server, stuck=True)
    conn.data_received(get(KEY) * 100)  # 100 small answers: about 20 KiB in all, under the mark
    assert answered(transport) == 100 and transport.reading
    conn.connection_lost(None)


def test_a_request_arriving_while_output_is_paused_waits_for_the_drain(server, big):
    conn, transport = connect(server, stuck=True)
    conn.data_received(get(BIG_KEY) * 2)
    assert transport.paused and answered(transport) == 2
    conn.data_received(get(KEY))  # not pipelined: it came after the pause, still it waits
    assert answered(transport) == 2
    transport.drain()
    assert answered(transport) == 3
    conn.connection_lost(None)


def test_answers_waiting_for_a_commit_are_held_to_the_high_water_mark(tmp_path, big):
    """A write's answer waits for its commit and every later answer queues behind it: that queue too stops the
    parsing once it holds more than the mark, and the commit lets it go on."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings = Settings(data=str(tmp_path), verify_threads=0, open_writes=True).validate()
        app = build_app(settings)
        app.keyspace.put(USER, "/pub/big.bin", BIG, "application/octet-stream")
        app.log.flush()
        srv = Server(settings, app, loop)
        conn, transport = connect(srv)
        put = f"PUT /{USER}/pub/w HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nw".encode()
        conn.data_received(put + get(BIG_KEY) * 50)
        assert transport.out == []  # the write's commit has not landed: nothing may leave yet
        assert conn.pending_bytes <= conn.queue_limit + len(BIG) + 1024
        assert len(conn.pending) == 3  # the 201, then two answers past the mark; 48 requests wait unparsed
        app.log.flush()
        conn.on_commit(app.durable_seq())
        loop.run_until_complete(asyncio.sleep(0))  # the parsing goes on from the loop, not inside the commit
        got = read_responses(b"".join(transport.out), [("PUT", f"/{USER}/pub/w")] + [("GET", BIG_KEY)] * 50)
        assert [s for s, _ in got] == [201] + [200] * 50
        conn.connection_lost(None)
        app.log.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize("head, status", [
    (b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    (b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"PUT /x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz HTTP/0.9\r\nHost: x\r\n\r\n", 505),
])
def test_ambiguous_framing_and_other_http_versions_are_refused_and_closed(server, head, status):
    closed, out = run(server, [head + get("/healthz")])  # a request smuggled behind it is never answered
    assert closed
    assert out.startswith(b"HTTP/1.1 %d " % status) and b"HTTP/1.1 200" not in out
    assert b'"error"' in out and b"connection: close" in out
    closed, out = run(server, [get("/healthz")])
    assert not closed and out.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("head, status", [
    (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (f"PUT {KEY} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n".encode(), 401),
    (f"PUT {KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx".encode(), 401),
])
def test_http_1_0_and_1_1_and_one_framing_header_pass_to_the_handler(server, head, status):
    _, out = run(server, [head])
    assert out.startswith(b"HTTP/1.1 %d " % status)  # 401: unsigned, so the write reached its handler


KiB = 1024
BUDGET = 200 * KiB  # bodies over 64 KiB may hold 200 KiB in all; bodies of at most 64 KiB may go to 225 KiB


@pytest.fixture
def small_budget(tmp_path):
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    settings = Settings(data=str(tmp_path), verify_threads=0, max_body_bytes=BUDGET,
                        body_budget_bytes=BUDGET).validate()
    app = build_app(settings)
    srv = Server(settings, app, loop)
    yield srv
    app.log.close()
    asyncio.set_event_loop(None)
    loop.close()


def put_head(length: int) -> bytes:
    return f"PUT /{USER}/pub/b HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


CHUNKED_HEAD = f"PUT /{USER}/pub/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()


def refused(transport: FakeTransport) -> bool:
    out = b"".join(transport.out)
    return (out.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in out and b'"unavailable"' in out
            and transport.closed)


def test_the_body_budget_is_full_at_its_edge_and_refuses_one_byte_more(small_budget):
    srv = small_budget
    a, ta = connect(srv)
    a.data_received(put_head(128 * KiB))
    b, tb = connect(srv)
    b.data_received(put_head(72 * KiB) + b"x" * 10)  # exactly full for large bodies: accepted, being read
    assert srv.body_bytes == BUDGET and ta.out == [] and tb.out == []
    c, tc = connect(srv)
    c.data_received(put_head(64 * KiB + 1))  # a large body one byte over: 503 before any of it is read
    assert refused(tc) and srv.body_bytes == BUDGET
    d, td = connect(srv)
    d.data_received(put_head(25 * KiB))  # a small body uses the reserve, to exactly its end
    assert td.out == [] and srv.body_bytes == BUDGET + BUDGET // 8
    e, te = connect(srv)
    e.data_received(put_head(1))  # and one byte past the reserve is refused too
    assert refused(te)
    f, tf = connect(srv)
    f.data_received(CHUNKED_HEAD + b"1\r\nx\r\n")  # a chunked body takes from the budget as it arrives
    assert refused(tf)
    g, tg = connect(srv)
    g.data_received(get("/healthz"))  # a request without a body is never refused by the budget
    assert b"".join(tg.out).startswith(b"HTTP/1.1 200 ")
    b.data_received(b"x" * (72 * KiB - 10))  # b's body is complete: handed over (401, unsigned), bytes come back
    assert b"".join(tb.out).startswith(b"HTTP/1.1 401 ") and srv.body_bytes == 153 * KiB
    a.connection_lost(None)  # a goes away mid-body: its reservation comes back too
    d.connection_lost(None)
    assert srv.body_bytes == 0
    h, th = connect(srv)
    body = b"x" * BUDGET  # the whole budget, chunked: 0x32000 bytes
    h.data_received(CHUNKED_HEAD + b"32000\r\n" + body + b"\r\n0\r\n\r\n")
    assert b"".join(th.out).startswith(b"HTTP/1.1 401 ") and srv.body_bytes == 0
    for conn in (b, c, e, f, g, h):
        conn.connection_lost(None)
    assert srv.body_bytes == 0


def test_a_chunked_body_leaves_the_small_reserve_once_it_grows_past_64_kib(small_budget):
    srv = small_budget
    a, ta = connect(srv)
    a.data_received(put_head(BUDGET - 64 * KiB))  # 136 KiB held
    b, tb = connect(srv)
    b.data_received(CHUNKED_HEAD + b"10000\r\n" + b"x" * 64 * KiB + b"\r\n")  # 64 KiB: still small, fits
    assert tb.out == [] and srv.body_bytes == BUDGET
    b.data_received(b"1\r\nx\r\n")  # 64 KiB + 1: a large body now, past the budget
    assert refused(tb) and srv.body_bytes == BUDGET - 64 * KiB
    a.connection_lost(None)
    b.connection_lost(None)
    assert srv.body_bytes == 0


def test_a_413_and_a_close_give_the_budget_back(small_budget):
    srv = small_budget
    a, ta = connect(srv)
    a.data_received(CHUNKED_HEAD + b"1f4\r\n" + b"x" * 500 + b"\r\n")
    assert srv.body_bytes == 500
    a.data_received(b"%x\r\n" % BUDGET + b"x" * BUDGET + b"\r\n")  # past max_body_bytes
    assert b"".join(ta.out).startswith(b"HTTP/1.1 413 ") and srv.body_bytes == 0
    a.connection_lost(None)
    assert srv.body_bytes == 0


def test_a_large_body_leaves_as_its_own_write_after_its_head(server):
    """Past LARGE_BODY the body is not copied behind its head: the head, then the very body bytes, in order with
    what is pipelined around it; a HEAD of it still has no body."""
    from engine.http.connection import LARGE_BODY

    value = bytes(range(256)) * (LARGE_BODY // 256 + 1)
    server.app.keyspace.put(USER, "/pub/large.bin", value, "application/octet-stream")
    server.app.log.flush()
    target = f"/{USER}/pub/large.bin"
    conn, transport = connect(server)
    conn.data_received(get(KEY) + get(target) + f"HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + get(KEY))
    assert value in transport.out  # one write holding the body alone
    got = read_responses(b"".join(transport.out), [("GET", KEY), ("GET", target), ("HEAD", target), ("GET", KEY)])
    assert got == [(200, VALUE), (200, value), (200, b""), (200, VALUE)]
    conn.connection_lost(None)
