"""Process lifecycle against `homestream serve` in a subprocess: graceful SIGTERM, durability across restarts."""

import signal
import socket
import time

import httpx

from .harness import ProcessServer


def test_sigterm_finishes_the_write_in_flight_closes_idle_connections_and_exits_0(tmp_path, alice):
    srv = ProcessServer(tmp_path / "data").start()
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        target = f"/{alice.user}/pub/inflight"
        body = b"x" * 1000
        busy = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        busy.sendall((f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                      f"Authorization: {alice.auth('PUT', target, body)}\r\n\r\n").encode() + body[:500])
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        busy.sendall(body[500:])
        answer = busy.recv(4096)
        assert answer.startswith(b"HTTP/1.1 201") and b"connection: close" in answer.lower()
        assert idle.recv(4096) == b""  # the idle keep-alive connection was closed
        started = time.monotonic()
        assert srv.proc.wait(10) == 0
        assert time.monotonic() - started < 10
        srv.start()
        assert httpx.get(srv.url + target).content == body
    finally:
        srv.kill()
