"""Helpers for tests of `serve --workers N`: servers, connections pinned to one worker, signed writes."""

from __future__ import annotations

import json
import socket
import time

import pytest

from e2e.harness import Key, WorkersServer


@pytest.fixture
def workers_server(tmp_path):
    started = []

    def make(workers: int = 2, **overrides) -> WorkersServer:
        srv = WorkersServer(tmp_path / f"data{len(started)}", workers, **overrides).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def carol():
    return Key(b"\x03" * 32)


def read_response(sock: socket.socket, buf: bytearray | None = None) -> tuple[int, dict, bytes, bytearray]:
    """One HTTP/1.1 response with a Content-Length (or none: 204/304) from a blocking socket."""
    buf = buf if buf is not None else bytearray()
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response")
        buf += data
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < end + 4 + length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed in a body")
        buf += data
    body = bytes(buf[end + 4:end + 4 + length])
    del buf[:end + 4 + length]
    return status, headers, body, buf


def request(sock: socket.socket, method: str, target: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    status, hdrs, data, _ = read_response(sock)
    return status, hdrs, data


def connect(port: int) -> tuple[socket.socket, int]:
    """A new keep-alive connection and the worker that accepted it (asked with /healthz on it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    status, _, body = request(sock, "GET", "/healthz")
    assert status == 200
    return sock, json.loads(body)["worker"]


def pinned(port: int, worker: int, tries: int = 400) -> socket.socket:
    """A connection accepted by `worker` (new connections until one lands there)."""
    for _ in range(tries):
        sock, got = connect(port)
        if got == worker:
            return sock
        sock.close()
    raise AssertionError(f"no connection landed on worker {worker} in {tries} tries")


def health(port: int) -> dict:
    sock, _ = connect(port)
    try:
        return json.loads(request(sock, "GET", "/healthz")[2])
    finally:
        sock.close()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
