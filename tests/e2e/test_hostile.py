"""Hostile input over raw sockets: each answered with the right status or a close, the server still serving
the next good request, and nothing half-written in the log."""

import json
import re
import socket
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


def exchange(port: int, data: bytes, wait: float = 5.0, shut: bool = False) -> bytes:
    """Send raw bytes and read until the server closes (or `wait` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                part = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not part:
                break
            chunks.append(part)
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def still_serving(server) -> None:
    r = httpx.get(server.url + "/healthz", timeout=5)
    assert r.status_code == 200


@pytest.mark.parametrize("data,status", [
    (b"\x00\x01garbage\r\n\r\n", 400),
    (b"GET /healthz\r\n\r\n", 400),  # no HTTP version
    (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),  # header without a colon
    (b"PUT /" + USER.encode() + b"/pub/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    # RFC 9112 6.1: both framing headers (a smuggling vector) or another HTTP version are refused, then closed
    (b"PUT /" + USER.encode() + b"/pub/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz HTTP/1.7\r\nHost: x\r\n\r\n", 505),
])
def test_malformed_requests_get_400_and_a_close(server, data, status):
    out = exchange(server.port, data)
    assert status_of(out) == status
    assert b'"error"' in out
    assert out.count(b"HTTP/1.1 ") == 1  # nothing behind it is answered: the connection was closed
    still_serving(server)


def test_request_line_over_limit_is_414(make_server):
    srv = make_server(max_request_line=1024)
    out = exchange(srv.port, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(out) == 414
    out = exchange(srv.port, b"GET /" + b"a" * 2000)  # never finished: still 414, not a hang
    assert status_of(out) == 414
    still_serving(srv)


def test_headers_over_limit_are_431(make_server):
    srv = make_server(max_header_bytes=4096)
    out = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert status_of(out) == 431
    still_serving(srv)


def test_content_length_over_limit_is_413_before_the_body(make_server):
    srv = make_server(max_body_bytes=100)
    head = f"PUT /{USER}/pub/a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n".encode()
    out = exchange(srv.port, head)  # the body is never sent: the answer must not wait for it
    assert status_of(out) == 413


def test_chunked_body_over_limit_is_413_as_soon_as_it_passes(make_server):
    srv = make_server(max_body_bytes=100)
    head = f"PUT /{USER}/pub/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    out = exchange(srv.port, head + b"65\r\n" + b"x" * 101 + b"\r\n")  # 0x65 = 101 bytes, no end chunk
    assert status_of(out) == 413
    assert srv.app.log.last_seq == 0


def test_body_cut_off_by_a_close_writes_nothing(server, alice):
    target = f"/{alice.user}/pub/cut"
    head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nAuthorization: {alice.auth('PUT', target, b'x' * 100)}\r\n\r\n"
    out = exchange(server.port, head.encode() + b"x" * 50, wait=1.0, shut=True)
    assert out == b"" or status_of(out) == 400
    assert server.app.log.last_seq == 0
    still_serving(server)


def test_content_length_longer_than_the_body_times_out(make_server, alice):
    srv = make_server(header_timeout=0.5)  # the body's grace before its rate counts
    head = f"PUT /{alice.user}/pub/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"
    start = time.monotonic()
    out = exchange(srv.port, head.encode(), wait=5)
    assert status_of(out) == 408 and b'"request_timeout"' in out
    assert time.monotonic() - start < 2.5
    assert srv.app.log.last_seq == 0
    still_serving(srv)


def test_slowloris_head_is_cut_at_the_header_timeout(make_server):
    srv = make_server(header_timeout=0.5)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        for _ in range(40):
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            s.setblocking(False)
            try:
                if s.recv(4096) is not None:
                    pass
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            finally:
                s.setblocking(True)
        assert closed or time.monotonic() - start < 4.5
    still_serving(srv)


def test_pipelined_requests_are_answered_in_order(server, alice):
    reqs = b""
    for i in range(5):
        target = f"/{alice.user}/pub/p{i}"
        body = str(i).encode()
        reqs += (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                 f"Authorization: {alice.auth('PUT', target, body)}\r\n\r\n").encode() + body
        reqs += f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    reqs += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = exchange(server.port, reqs)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
    assert statuses == [201, 200] * 5 + [200]
    bodies = re.findall(rb"content-length: 1\r\n(?:[^\r\n]+\r\n)*\r\n(\d)", out)  # any header order
    assert bodies == [b"0", b"1", b"2", b"3", b"4"]  # each GET saw the PUT pipelined just before it


def test_keep_alive_reuses_one_connection(server):
    with httpx.Client(base_url=server.url) as c:
        for _ in range(20):
            assert c.get("/healthz").status_code == 200
    assert server.app.metrics.connections_total == 1


def test_connection_limit_answers_503(make_server):
    srv = make_server(max_connections=2)
    if getattr(srv, "workers", 1) > 1:
        pytest.skip("max_connections is per process: N workers hold up to N times it (docs/OPERATIONS.md)")
    socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        out = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(out) == 503
    finally:
        for s in socks:
            s.close()


def test_5000_idle_connections_do_not_stop_service(make_server):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 12000:
        pytest.skip(f"needs 12000 file descriptors, hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 12000), hard))
    srv = make_server()
    socks = []
    try:
        for _ in range(5000):
            socks.append(socket.create_connection(("127.0.0.1", srv.port)))
        still_serving(srv)
        deadline = time.monotonic() + 8  # silent connections are closed at the header timeout (10 s from start)
        while time.monotonic() < deadline and len(srv.server.connections) < 5000:
            time.sleep(0.1)
        assert len(srv.server.connections) >= 5000
    finally:
        for s in socks:
            s.close()


mutations = st.sampled_from([
    b"PUT /" + USER.encode() + b"/pub/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /" + USER.encode() + b"/pub/c/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=mutations, cut=st.integers(0, 200), junk=st.binary(max_size=40), pos=st.integers(0, 200))
def test_random_and_mutated_request_bytes_never_break_the_server(server, base, cut, junk, pos):
    data = base[:pos] + junk + base[pos:]
    data = data[: max(cut, 1)] if cut < len(data) else data
    exchange(server.port, data, wait=0.5, shut=True)
    still_serving(server)
    assert server.app.log.last_seq == 0  # every write here is unsigned: nothing may reach the log


# ---- deadlines, the body budget and output back-pressure (issue 21 items 1-3), with small settings ----

def read_until_close(s: socket.socket, wait: float = 5.0) -> tuple[bytes, float]:
    """(everything the server sends until it closes, seconds that took)."""
    start = time.monotonic()
    s.settimeout(wait)
    chunks = []
    try:
        while True:
            part = s.recv(65536)
            if not part:
                break
            chunks.append(part)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks), time.monotonic() - start


def test_a_silent_new_connection_gets_the_header_timeout_not_the_idle_one(make_server):
    srv = make_server(header_timeout=0.4, idle_timeout=10)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        out, took = read_until_close(s)
    assert status_of(out) == 408 and b'"request_timeout"' in out
    assert 0.3 < took < 2.0  # the 10 s idle timer would still be running
    still_serving(srv)


@pytest.mark.parametrize("late, status", [(0.2, 200), (1.0, 408)])
def test_a_head_completing_just_inside_or_just_past_the_header_timeout(make_server, late, status):
    srv = make_server(header_timeout=0.6, idle_timeout=10)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(late)
        try:
            s.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        out, _ = read_until_close(s)
    assert status_of(out) == status
    still_serving(srv)


def test_more_bytes_never_extend_the_header_timeout(make_server):
    srv = make_server(header_timeout=0.5, idle_timeout=10)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        out = b""
        s.settimeout(0.05)
        while time.monotonic() - start < 3:  # a header line every 50 ms, as a slowloris does
            try:
                s.sendall(b"X-a: b\r\n")
                part = s.recv(4096)
                if not part:
                    break
                out += part
            except socket.timeout:
                continue
            except OSError:
                break
        took = time.monotonic() - start
    assert status_of(out) == 408
    assert took < 1.5
    still_serving(srv)


def test_a_later_head_is_timed_from_its_first_byte(make_server):
    srv = make_server(header_timeout=0.5, idle_timeout=10)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(4096)
        assert status_of(first) == 200
        time.sleep(0.8)  # idle between requests: longer than the header timeout, and still open
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        out, took = read_until_close(s)
    assert status_of(out) == 408
    assert 0.35 < took < 1.5
    still_serving(srv)


def signed_put(alice, name: str, body: bytes) -> tuple[bytes, bytes]:
    target = f"/{alice.user}/pub/{name}"
    head = (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: {alice.auth('PUT', target, body)}\r\nConnection: close\r\n\r\n").encode()
    return head, body


def test_a_trickled_body_is_cut_after_its_grace(make_server, alice):
    srv = make_server(header_timeout=0.4, body_min_rate=1000)
    head, body = signed_put(alice, "trickle", b"x" * 100)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head)
        start = time.monotonic()
        s.settimeout(0.05)
        out = b""
        for byte in body:  # a byte every 50 ms: 20 B/s, far under 1000 B/s
            try:
                s.sendall(bytes([byte]))
                out += s.recv(4096)
                break
            except socket.timeout:
                continue
            except OSError:
                break
        rest, _ = read_until_close(s, 2)
        out += rest
        took = time.monotonic() - start
    assert status_of(out) == 408 and b'"request_timeout"' in out
    assert took < 1.5
    assert srv.app.log.last_seq == 0
    still_serving(srv)


@pytest.mark.parametrize("late, status", [(0.3, 201), (1.3, 408)])
def test_a_body_just_inside_or_just_past_its_rate_deadline(make_server, alice, late, status):
    """Grace 0.4 s, then 1 s per 1000 bytes: 400 bytes sent at once give a deadline of 0.8 s."""
    srv = make_server(header_timeout=0.4, body_min_rate=1000)
    head, body = signed_put(alice, "edge", b"y" * 1000)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head + body[:400])
        time.sleep(late)
        try:
            s.sendall(body[400:])
        except OSError:
            pass
        out, _ = read_until_close(s)
    assert status_of(out) == status
    assert srv.app.log.last_seq == (1 if status == 201 else 0)
    still_serving(srv)


def test_a_body_at_a_good_rate_is_still_cut_at_the_body_timeout(make_server, alice):
    srv = make_server(header_timeout=0.3, body_min_rate=1000, body_timeout=1.0)
    head, body = signed_put(alice, "long", b"z" * 8000)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head)
        start = time.monotonic()
        for i in range(0, len(body), 200):  # 2000 B/s: twice the minimum rate, 4 s for the whole body
            try:
                s.sendall(body[i:i + 200])
            except OSError:
                break
            time.sleep(0.1)
            if srv.call(lambda: srv.app.metrics.timeouts):
                break
        out, _ = read_until_close(s, 2)
        took = time.monotonic() - start
    assert status_of(out) == 408
    assert 0.8 < took < 2.0
    assert srv.app.log.last_seq == 0
    still_serving(srv)


def test_the_body_budget_refuses_a_body_past_it_with_503_and_retry_after(make_server, server_workers, alice):
    if server_workers != 1:
        pytest.skip("the body budget is per process: --workers N holds up to N x --body-budget-bytes "
                    "(docs/OPERATIONS.md); the second body may land on another worker")
    srv = make_server(max_body_bytes=128 * 1024, body_budget_bytes=128 * 1024)
    holder = socket.create_connection(("127.0.0.1", srv.port))
    large = b"L" * (64 * 1024 + 1)
    try:
        head, body = signed_put(alice, "held", b"h" * (128 * 1024))
        holder.sendall(head + body[:10])  # the whole budget, its body unfinished
        time.sleep(0.1)
        out = exchange(srv.port, b"".join(signed_put(alice, "large", large)))
        assert status_of(out) == 503 and b"\r\nretry-after: 1\r\n" in out and b'"unavailable"' in out
        out = exchange(srv.port, b"".join(signed_put(alice, "small", b"1")))
        assert status_of(out) == 201  # a small write still passes, on the reserve past the budget
    finally:
        holder.close()
    deadline = time.monotonic() + 3
    while srv.call(lambda: srv.server.body_bytes) and time.monotonic() < deadline:
        time.sleep(0.02)
    out = exchange(srv.port, b"".join(signed_put(alice, "large", large)))  # the holder's bytes came back
    assert status_of(out) == 201
    assert srv.call(lambda: srv.server.body_bytes) == 0


def big_value(srv, alice, size: int) -> str:
    target = f"/{alice.user}/pub/big"
    body = bytes(range(256)) * (size // 256)
    r = httpx.put(srv.url + target, content=body, headers={"Authorization": alice.auth("PUT", target, body)})
    assert r.status_code == 201
    return target


def test_pipelined_gets_on_a_socket_that_never_reads_queue_one_answer(make_server, alice):
    srv = make_server()
    target = big_value(srv, alice, 1 << 20)
    before = srv.call(lambda: srv.app.metrics.responses[200])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 60)
        time.sleep(0.5)

        def state():  # on the server's loop
            (conn,) = [c for c in srv.server.connections if c.transport.get_write_buffer_size()]
            return conn.transport.get_write_buffer_size(), srv.app.metrics.responses[200] - before

        queued, answered = srv.call(state)
        assert queued <= 64 * 1024 + (1 << 20) + 4096  # one answer over the high-water mark, at most
        assert answered <= 8  # a few more sit in the kernel's socket buffers; not 60
        got = 0
        buf = bytearray()
        need = 0  # bytes the answer being read still lacks, once its head is parsed
        s.settimeout(10)
        while got < 60:  # now read: every answer comes, in order, whole
            part = s.recv(1 << 20)
            assert part
            buf += part
            while len(buf) >= need:
                end = buf.find(b"\r\n\r\n", 0, 4096)
                if end < 0:
                    need = len(buf) + 1
                    break
                assert buf.startswith(b"HTTP/1.1 200 ")
                need = end + 4 + int(re.search(rb"content-length: (\d+)", buf[:end]).group(1))
                if len(buf) < need:
                    break
                del buf[:need]
                need = 0
                got += 1
    assert got == 60
    still_serving(srv)


def test_a_peer_that_never_reads_is_dropped_after_the_send_timeout(make_server, alice):
    srv = make_server(send_timeout=0.5)
    target = big_value(srv, alice, 1 << 20)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 20)
        start = time.monotonic()
        while srv.call(lambda: len(srv.server.connections)) and time.monotonic() - start < 5:
            time.sleep(0.05)
        took = time.monotonic() - start
    assert 0.4 < took < 2.0
    assert srv.call(lambda: srv.app.metrics.timeouts) == 1
    still_serving(srv)


def test_a_large_non_live_stream_to_a_peer_that_never_reads_holds_about_one_slice(make_server, alice):
    """A non-live `/get` stream is written a slice at a time while the peer reads (engine/http/paced.py): a peer
    that reads nothing holds about one item's frame over the high-water mark, not the whole answer."""
    srv = make_server()
    storage = f"{alice.user}/pub/bulk/"
    for i in range(12):  # 12 items of 512 KiB: 6 MiB of frames, more than the socket buffers take
        body = json.dumps({"value": {"n": i, "pad": "p" * (512 * 1024)}}).encode()
        r = httpx.post(f"{srv.url}/set/{storage}", content=body,
                       headers={"Authorization": alice.auth("POST", f"/set/{storage}", body)})
        assert r.status_code == 201
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET /get?id={storage}&live=false HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                  .encode())
        time.sleep(1.0)
        queued = srv.call(lambda: max(c.transport.get_write_buffer_size() for c in srv.server.connections))
        assert queued <= 64 * 1024 + 2 * 600 * 1024  # the mark, plus at most about one item's frame
        still_serving(srv)


def test_a_peer_that_reads_its_answer_late_keeps_its_connection(make_server, alice):
    """The send timeout runs only while the peer reads nothing: once it has read, the connection is an ordinary
    keep-alive one again (idle, then the next request served), long after send_timeout."""
    srv = make_server(send_timeout=0.5)
    target = big_value(srv, alice, 8 << 20)  # more than the socket buffers take: writing pauses
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.2)  # paused: nothing read yet, but less than send_timeout
        assert srv.call(lambda: [c.write_paused for c in srv.server.connections]) == [True]
        s.settimeout(5)
        got = 0
        while got < (8 << 20):  # the answer's head and body: the body alone is 8 MiB
            part = s.recv(1 << 20)
            assert part, "the server dropped a peer that was reading"
            got += len(part)
        time.sleep(1.2)  # idle, more than twice send_timeout
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        while b"\r\n\r\n" not in out or not out.endswith(b"}"):
            part = s.recv(65536)
            assert part, "the server dropped a connection whose peer had read everything"
            out += part
    assert out.split(b"HTTP/1.1 ")[-1].startswith(b"200 ")
    assert srv.call(lambda: srv.app.metrics.timeouts) == 0
