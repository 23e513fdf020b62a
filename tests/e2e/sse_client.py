"""A small blocking SSE reader over a raw socket for tests: decodes HTTP chunked framing and SSE frames."""

from __future__ import annotations

import json
import socket
import time

from engine.http.sse import parse_frames
from engine.names import parse_resume_point


class SSEReader:
    def __init__(self, port: int, target: str, headers: dict[str, str] | None = None, timeout: float = 10.0,
                 rcvbuf: int | None = None, tls: bool = False, source: str | None = None,
                 sock: socket.socket | None = None):
        if sock is None:  # else: a connected keep-alive socket to send the request on (a chosen worker's)
            sock = socket.socket()
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            if source:  # another loopback address (127.0.0.2...): a second client as a proxy sees it
                sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
            if tls:  # through a TLS front (tests/e2e/test_behind_nginx.py): its certificate is self-signed
                import ssl

                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        head = f"GET {target} HTTP/1.1\r\nHost: test\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.raw = b""
        self.body = bytearray()
        self.status = None
        self.headers: dict[str, str] = {}
        self.ended = False  # the chunked body ended (0-length chunk) or the socket closed
        self.frames: list[dict] = []
        self._parsed = 0  # bytes of body already turned into frames

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:  # reset, or a TLS connection cut without close_notify
            data = b""
        if not data:
            self.ended = True
            return False
        self.raw += data
        self._parse()
        return True

    def _parse(self) -> None:
        if self.status is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.raw[:end].decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self.raw = self.raw[end + 4:]
        if self.headers.get("transfer-encoding") == "chunked":
            raw, pos = self.raw, 0
            while True:
                nl = raw.find(b"\r\n", pos)
                if nl < 0:
                    break
                size = int(raw[pos:nl], 16)
                if len(raw) < nl + 2 + size + 2:
                    break
                if size == 0:
                    self.ended = True
                    pos = len(raw)
                    break
                self.body += raw[nl + 2: nl + 2 + size]
                pos = nl + 4 + size
            self.raw = raw[pos:]
        else:
            self.body += self.raw
            self.raw = b""

    def read_frames(self, count: int | None = None, timeout: float = 10.0, until_end: bool = False) -> list[dict]:
        """Read until `count` event frames (PUT/DEL/gap/end) have arrived, the body ended, or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            cut = self.body.rfind(b"\n\n")
            if cut >= 0 and cut + 2 > self._parsed:
                text = self.body[self._parsed:cut + 2].decode("utf-8", "replace")
                self.frames.extend(f for f in parse_frames(text) if "event" in f)
                self._parsed = cut + 2
            if count is not None and len(self.frames) >= count and not until_end:
                return self.frames
            if self.ended or time.monotonic() >= deadline:
                return self.frames
            self._fill(deadline)

    def head(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None and not self.ended and time.monotonic() < deadline:
            self._fill(deadline)
        return self.status

    def close(self) -> None:
        self.sock.close()


def events(frames: list[dict]) -> list[dict]:
    """The PUT/DEL frames with their data decoded and their id's seq checked against data.seq."""
    out = []
    for f in frames:
        if f["event"] in ("PUT", "DEL"):
            data = json.loads(f["data"])
            assert parse_resume_point(f["id"]) == data["seq"]
            out.append({"id": f["id"], "event": f["event"], **data})
    return out
