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
