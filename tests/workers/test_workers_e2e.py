"""`serve --workers 2` seen from outside: one sequence, read your writes across workers, resumes across
workers, crashes of a worker and of the writer, SIGTERM with streams on every worker, restarts counted."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time

import httpx

from e2e.sse_client import SSEReader, events
from .conftest import connect, health, pinned, request, wait_for


def put_request(key, path: str, body: bytes) -> tuple[str, dict]:
    target = f"/{key.user}{path}"
    return target, {"Authorization": key.auth("PUT", target, body)}


def test_a_write_on_one_worker_is_read_at_once_on_a_new_connection_to_the_other(workers_server, alice):
    srv = workers_server(2)
    for i in range(6):
        writer_sock = pinned(srv.port, i % 2)
        body = f"value {i}".encode()
        target, headers = put_request(alice, f"/pub/ryw/{i}", body)
        status, hdrs, _ = request(writer_sock, "PUT", target, body, headers)
        assert status == 201 and hdrs["event-id"].endswith("." + alice.user)
        writer_sock.close()
        # a new connection, whichever worker takes it: the first request on it sees the write; keep trying until
        # one has landed on the other worker
        landed_elsewhere = False
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            status, _, value = request(sock, "GET", target)
            assert (status, value) == (200, body)
            _, _, h = request(sock, "GET", "/healthz")
            sock.close()
            if json.loads(h)["worker"] != i % 2:
                landed_elsewhere = True
                break
        assert landed_elsewhere


def test_on_one_connection_a_read_after_a_write_sees_it_and_the_answers_match_one_process(workers_server, alice):
    srv = workers_server(2)
    sock, _ = connect(srv.port)
    target, headers = put_request(alice, "/pub/same", b"one")
    status, hdrs, _ = request(sock, "PUT", target, b"one", headers)
    assert status == 201 and "etag" in hdrs and hdrs["event-id"].startswith("0000000000001.")
    assert request(sock, "GET", target)[2] == b"one"
    target, headers = put_request(alice, "/pub/same", b"two")
    status, hdrs, _ = request(sock, "PUT", target, b"two", headers)
    assert status == 204 and hdrs["event-id"].startswith("0000000000002.")
    assert request(sock, "GET", target)[2] == b"two"
    # a replay is refused even on another worker: the writer keeps the one replay memory
    for w in (0, 1):
        s = pinned(srv.port, w)
        status, hdrs, body = request(s, "PUT", target, b"two", headers)
        assert status == 401 and json.loads(body)["error"] == "replayed"
        s.close()
    missing = f"/{alice.user}/pub/none"
    status, _, body = request(sock, "DELETE", missing, b"", {"Authorization": alice.auth("DELETE", missing)})
    assert status == 404 and json.loads(body)["error"] == "not_found"
    coll = f"/{alice.user}/pub/items/"
    statuses = []
    for _ in range(2):
        status, hdrs, _ = request(sock, "POST", coll, b"item", {"Authorization": alice.auth("POST", coll, b"item")})
        statuses.append((status, hdrs["location"]))
    assert [s for s, _ in statuses] == [201, 200] and statuses[0][1] == statuses[1][1]
    sock.close()


def test_a_subscriber_moved_between_workers_with_last_event_id_gets_every_event_once(workers_server, alice):
    srv = workers_server(2)
    first = SSEReader(srv.port, f"/subscribe?p={alice.user}/*", sock=pinned(srv.port, 0))
    assert first.head() == 200
    n = 30
    with httpx.Client(base_url=srv.url) as client:
        for i in range(n // 2):
            target, headers = put_request(alice, f"/pub/m/{i}", b"%d" % i)
            assert client.put(target, content=b"%d" % i, headers=headers).status_code == 201
        got = events(first.read_frames(n // 2))
        first.close()
        for i in range(n // 2, n):  # written while the subscriber is away
            target, headers = put_request(alice, f"/pub/m/{i}", b"%d" % i)
            assert client.put(target, content=b"%d" % i, headers=headers).status_code == 201
    last = got[-1]["id"]
    second = SSEReader(srv.port, f"/subscribe?p={alice.user}/*", {"Last-Event-ID": last}, sock=pinned(srv.port, 1))
    assert second.head() == 200
    got += events(second.read_frames(n - len(got)))
    second.close()
    assert [e["seq"] for e in got] == list(range(1, n + 1))
    assert [e["path"] for e in got] == [f"/pub/m/{i}" for i in range(n)]


class SignedLoad:
    """Threads writing signed PUTs to distinct keys; remembers every acknowledged one."""

    def __init__(self, url: str, key, threads: int = 4):
        self.url = url
        self.key = key
        self.acked: dict[str, tuple[bytes, str]] = {}  # path -> (body, event id)
        self.refused = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, t: int) -> None:
        i = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                path = f"/pub/load/{t}/{i}"
                body = f"{t}:{i}".encode() * 8
                i += 1
                target = f"/{self.key.user}{path}"
                try:
                    r = client.put(target, content=body, headers={"Authorization": self.key.auth("PUT", target, body)})
                except httpx.HTTPError:
                    with self.lock:
                        self.refused += 1
                    continue
                if r.status_code == 201:
                    with self.lock:
                        self.acked[path] = (body, r.headers["event-id"])
                else:
                    with self.lock:
                        self.refused += 1

    def __enter__(self) -> "SignedLoad":
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def check_every_acknowledged_write(url: str, key, acked: dict[str, tuple[bytes, str]]) -> None:
    """Each acknowledged write readable with its bytes, and in the replayed history exactly once, at its id."""
    with httpx.Client(base_url=url, timeout=20) as client:
        for path, (body, _id) in acked.items():
            r = client.get(f"/{key.user}{path}")
            assert (r.status_code, r.content) == (200, body), path
        r = client.get("/subscribe", params={"p": f"{key.user}/*", "after": "0", "live": "false"})
        assert r.status_code == 200
    ids = re.findall(r"^id: (\S+)$", r.text, re.M)
    paths = [json.loads(d)["path"] for d in re.findall(r"^data: (.*)$", r.text, re.M)
             if d.startswith("{\"seq\"")]
    assert len(ids) == len(set(ids))
    seqs = [int(json.loads(d)["seq"]) for d in re.findall(r"^data: (.*)$", r.text, re.M) if d.startswith("{\"seq\"")]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    by_path = {}
    for p, i in zip(paths, ids):
        assert p not in by_path, f"{p} replayed twice"
        by_path[p] = i
    for path, (_body, event_id) in acked.items():
        assert by_path.get(path) == event_id, path


def test_kill_9_of_a_worker_under_signed_writes_loses_no_acknowledged_write(workers_server, alice):
    srv = workers_server(2)
    victim = health(srv.port)["pid"]
    with SignedLoad(srv.url, alice) as load:
        wait_for(lambda: load.count() >= 40)
        os.kill(victim, signal.SIGKILL)
        before = load.count()
        wait_for(lambda: load.count() >= before + 40)
    assert load.count() >= 80
    check_every_acknowledged_write(srv.url, alice, load.acked)
    wait_for(lambda: len({health(srv.port)["worker"] for _ in range(20)}) == 2)


def test_kill_9_of_the_writer_is_restarted_and_no_acknowledged_write_is_lost(workers_server, alice):
    srv = workers_server(2)
    workers: set[int] = set()
    deadline = time.monotonic() + 10
    while len(workers) < 2 and time.monotonic() < deadline:  # new connections until both workers answered
        workers.add(health(srv.port)["pid"])
    assert len(workers) == 2
    writer = [pid for pid in srv.children() if pid not in workers]
    assert len(writer) == 1
    with SignedLoad(srv.url, alice) as load:
        wait_for(lambda: load.count() >= 40)
        os.kill(writer[0], signal.SIGKILL)
        before = load.count()
        wait_for(lambda: load.count() >= before + 40, timeout=30)
    check_every_acknowledged_write(srv.url, alice, load.acked)
    metrics = httpx.get(srv.url + "/metrics", timeout=10).text
    assert re.search(r"^homestream_writer_restarts_total 1$", metrics, re.M)
    assert health(srv.port)["writer"] == "up"


def test_sigterm_ends_the_streams_of_every_worker_with_shutdown_and_exits_0(workers_server, alice):
    srv = workers_server(2)
    readers = [SSEReader(srv.port, f"/subscribe?p={alice.user}/*", sock=pinned(srv.port, w)) for w in (0, 1)]
    for r in readers:
        assert r.head() == 200
    assert srv.stop() == 0
    for r in readers:
        frames = r.read_frames(until_end=True, timeout=15)
        ends = [f for f in frames if f["event"] == "end"]
        assert len(ends) == 1 and json.loads(ends[0]["data"])["reason"] == "shutdown"
        r.close()


def test_a_dead_worker_is_restarted_and_counted(workers_server):
    srv = workers_server(2)
    victim = health(srv.port)
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: re.search(r"^homestream_worker_restarts_total 1$",
                               httpx.get(srv.url + "/metrics", timeout=10).text, re.M))
    pids = wait_for(lambda: (lambda s: s if len(s) == 2 else None)({h["pid"] for h in
                                                                     (health(srv.port) for _ in range(20))}))
    assert victim["pid"] not in pids


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response of a raw HTTP/1.1 byte stream (Content-Length framed)."""
    out, pos = [], 0
    head_re = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n((?:[^\r]+\r\n)*)\r\n")
    while True:
        m = head_re.match(raw, pos)
        if m is None:
            return out
        length = re.search(rb"content-length: (\d+)", m.group(2))
        n = int(length.group(1)) if length else 0
        out.append((int(m.group(1)), raw[m.end():m.end() + n]))
        pos = m.end() + n


def pipelined(port: int, data: bytes) -> list[tuple[int, bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        raw = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            raw += chunk
    return responses(raw)


def put_raw(key, target: str, body: bytes) -> bytes:
    auth = key.auth("PUT", target, body)
    return (f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\nAuthorization: {auth}\r\n\r\n"
            ).encode() + body


def test_on_one_connection_each_pipelined_read_sees_the_writes_before_it(workers_server, alice):
    srv = workers_server(2)
    data, expect = b"", []
    for i in range(8):
        target = f"/{alice.user}/pub/pipe/{i % 3}"
        data += put_raw(alice, target, b"v%d" % i) + f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        expect += [(201 if i < 3 else 204, b""), (200, b"v%d" % i)]
    got = pipelined(srv.port, data + b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got[:-1] == expect


def test_pipelined_writes_on_one_connection_share_commits(workers_server, alice):
    """Writes are forwarded without waiting for their commit (the writer orders them): twenty pipelined PUTs
    take fewer than twenty commits, and the reads after them see the last values."""
    srv = workers_server(2)
    data = b"".join(put_raw(alice, f"/{alice.user}/pub/burst/{i % 4}", b"w%d" % i) for i in range(20))
    data += b"".join(f"GET /{alice.user}/pub/burst/{k} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for k in range(4))
    data += b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    got = pipelined(srv.port, data)
    assert [s for s, _ in got[:20]] == [201] * 4 + [204] * 16
    assert got[20:24] == [(200, b"w%d" % i) for i in range(16, 20)]
    commits = float(re.search(rb"^homestream_log_commits_total (\S+)$", got[24][1], re.M).group(1))
    assert commits < 20
