"""The read cache end to end: a server with it and one without answer the same requests with the very same bytes
(over one keep-alive connection each), while the cached server serves repeated plain GETs from the cache."""

import socket

from engine.names import content_hash

from .harness import Key


def _request(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
             version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: t"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawClient:
    """One keep-alive connection; `ask` returns one whole response, head and body, as bytes."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def _fill(self) -> bool:
        part = self.sock.recv(65536)
        self.buf += part
        return bool(part)

    def ask(self, method: str, raw: bytes) -> bytes:
        self.sock.sendall(raw)
        return self.read_one(method)

    def read_one(self, method: str) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                break
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if method == "HEAD" or status in (204, 304):
            length = 0
        while len(rest) < length and self._fill():
            rest = self.buf.partition(b"\r\n\r\n")[2]
        self.buf = rest[length:]
        return head + sep + rest[:length]

    def close(self):
        self.sock.close()


def _script(alice: Key) -> list[tuple[str, str, bytes]]:
    """(what it checks, method, request bytes): built once, signatures included, and sent to both servers."""
    u = alice.user
    a, c, priv = f"/{u}/pub/c/a.json", f"/{u}/pub/c/", f"/{u}/priv/x"

    def signed(note, m, t, b=b"", h=None):
        return note, m, _request(m, t, {"Authorization": alice.auth(m, t, b), **(h or {})}, b)

    def plain(note, m, t, h=None):
        return note, m, _request(m, t, h)

    v3_tag = '"' + content_hash(b'{"v":3}') + '"'
    return [
        signed("put v1", "PUT", a, b'{"v":1}', {"Content-Type": "application/json"}),
        plain("get v1 (seen)", "GET", a), plain("get v1 (fills)", "GET", a), plain("get v1 (hit)", "GET", a),
        plain("get v1 (hit again)", "GET", a),
        plain("head", "HEAD", a), plain("cors", "GET", a, {"Origin": "https://app.example"}),
        signed("signed get", "GET", a),
        plain("query (seen)", "GET", a + "?x=1"), plain("query (fills)", "GET", a + "?x=1"),
        plain("query (hit)", "GET", a + "?x=1"),
        signed("put v2", "PUT", a, b'{"v":2}'), plain("get v2 (stale, fills)", "GET", a),
        plain("get v2 (hit)", "GET", a),  # admitted at once: the stale entry's target was worth keeping
        signed("delete", "DELETE", a), plain("404 (stale)", "GET", a), plain("404 again", "GET", a),
        signed("put v3", "PUT", a, b'{"v":3}'), plain("get v3 (fills)", "GET", a),
        plain("304", "GET", a, {"If-None-Match": v3_tag}),
        plain("listing", "GET", c), plain("listing again", "GET", c),
        signed("put private", "PUT", priv, b"secret"), plain("private unsigned", "GET", priv),
        plain("private unsigned again", "GET", priv), signed("private by owner", "GET", priv),
    ]


def test_read_cache_answers_with_the_bytes_the_uncached_server_sends(make_server, alice):
    cached, uncached = make_server(), make_server(read_cache_bytes=0)
    assert cached.app.read_cache is not None and uncached.app.read_cache is None
    steps = _script(alice)
    assert len({note for note, _m, _raw in steps}) == len(steps)
    answers = []
    for srv in (cached, uncached):
        client = RawClient(srv.port)
        try:
            answers.append({note: client.ask(m, raw) for note, m, raw in steps})
        finally:
            client.close()
    assert answers[0] == answers[1]
    got = answers[0]
    assert got["get v1 (hit)"].startswith(b"HTTP/1.1 200 ") and got["get v1 (hit)"].endswith(b'{"v":1}')
    assert b"application/json" in got["get v1 (hit)"]
    assert got["get v2 (hit)"].endswith(b'{"v":2}') and got["404 again"].startswith(b"HTTP/1.1 404 ")
    assert got["304"].startswith(b"HTTP/1.1 304 ") and got["private unsigned"].startswith(b"HTTP/1.1 401 ")
    assert got["private by owner"].endswith(b"secret")
    assert b"https://app.example" in got["cors"] or b"access-control-allow-origin: *" in got["cors"]
    cache = cached.app.read_cache
    assert cache.hits == 4  # the four "(hit...)" steps; nothing else was answered from the cache
    assert cache.stale == 2  # v2 after v1, and the 404 after the delete


def test_read_cache_hits_show_in_metrics_and_http10_takes_the_framed_path(server, alice):
    client = RawClient(server.port)
    try:
        target = f"/{alice.user}/pub/m.txt"
        client.ask("PUT", _request("PUT", target, {"Authorization": alice.auth("PUT", target, b"m")}, b"m"))
        first = client.ask("GET", _request("GET", target))  # a first miss: the doorkeeper notes it
        assert client.ask("GET", _request("GET", target)) == first  # a second: kept
        assert client.ask("GET", _request("GET", target)) == first  # a hit
        metrics = client.ask("GET", _request("GET", "/metrics")).decode()
    finally:
        client.close()
    assert "homestream_read_cache_hits_total 1" in metrics
    assert "homestream_read_cache_entries 1" in metrics
    # HTTP/1.0 closes after the answer: not the keep-alive fast path, so h11 frames it and the cache is not used
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(_request("GET", target, version="1.0"))
        data = b""
        while part := s.recv(65536):
            data += part
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"m") and b"connection: close" in data.lower()
    assert server.app.read_cache.hits == 1


def test_read_cache_pipelined_write_then_read_sees_the_write(server, alice):
    """GET (from the cache), PUT, GET in one packet: the second GET answers the new value, after the PUT's answer."""
    target = f"/{alice.user}/pub/pipe.txt"
    client = RawClient(server.port)
    try:
        client.ask("PUT", _request("PUT", target, {"Authorization": alice.auth("PUT", target, b"one")}, b"one"))
        for _ in range(3):  # seen, stored, served
            assert client.ask("GET", _request("GET", target)).endswith(b"one")
        hits = server.app.read_cache.hits
        client.sock.sendall(_request("GET", target)
                            + _request("PUT", target, {"Authorization": alice.auth("PUT", target, b"two")}, b"two")
                            + _request("GET", target))
        first, put, second = client.read_one("GET"), client.read_one("PUT"), client.read_one("GET")
    finally:
        client.close()
    assert first.endswith(b"one") and put.startswith(b"HTTP/1.1 204 ") and second.endswith(b"two")
    assert server.app.read_cache.hits == hits + 1 and server.app.read_cache.stale >= 1


def test_undecodable_target_is_a_400_each_time_and_never_cached(server, alice):
    target = f"/{alice.user}/pub/%ff.txt"  # not UTF-8 once decoded
    client = RawClient(server.port)
    try:
        answers = [client.ask("GET", _request("GET", target)) for _ in range(3)]
        ok = client.ask("GET", _request("GET", "/healthz"))  # the connection still serves
    finally:
        client.close()
    assert all(a.startswith(b"HTTP/1.1 400 ") and b'"error":"invalid_name"' in a for a in answers)
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert server.app.read_cache.hits == 0 and len(server.app.read_cache) == 0
