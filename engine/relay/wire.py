"""A minimal HTTP/1.1 GET for one long event stream: what a relay's homestream follower reads its upstream with.

httpx (the client library of engine/client) costs ~80 µs of CPU per chunk of a streamed body, and an upstream
sends each commit's events as one chunk: at 1,600 upstream events/s that was most of the relay's own work. Here a
stream is one asyncio connection, the response head parsed once, then the chunked body decoded by a small pure
state machine (`ChunkedDecoder`) into the bytes the SSE parser wants (~20 µs per chunk, socket read included).
Invariants: the decoder yields exactly the chunks' data bytes, in order, whatever the split of the input, and
raises ValueError on any framing it does not understand (the follower then reconnects from its cursor); a
response other than 200 raises `StreamRefused` with its status and the start of its body; every wait is bounded
(connect, head, and each read by the idle timeout).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import AsyncIterator
from urllib.parse import urlencode, urlsplit

MAX_HEAD = 64 * 1024
MAX_SIZE_LINE = 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")
SIZE, DATA, CRLF, TRAILER, DONE = range(5)


class StreamRefused(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"answered {status}: {body[:300].decode('utf-8', 'replace')}")
        self.status = status


class ChunkedDecoder:
    """Incremental decoder of an HTTP/1.1 chunked body: feed bytes as they come, get the data bytes."""

    def __init__(self) -> None:
        self.state = SIZE
        self.left = 0
        self._buf = b""

    @property
    def done(self) -> bool:
        return self.state == DONE

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n and self.state != DONE:
            state = self.state
            if state == DATA:
                take = min(self.left, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self.left -= take
                if not self.left:
                    self.state = CRLF
            elif state == CRLF:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
                pos += 2
                self.state = SIZE
            else:  # SIZE or TRAILER: one line
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if n - pos > MAX_SIZE_LINE:
                        raise ValueError("chunk size line too long")
                    break
                line = buf[pos:nl]
                pos = nl + 2
                if state == TRAILER:
                    if not line:
                        self.state = DONE
                    continue
                digits = line.split(b";", 1)[0].strip(b" \t")
                if not digits or not _HEX.issuperset(digits):
                    raise ValueError(f"bad chunk size {line[:40]!r}")
                size = int(digits, 16)
                if size:
                    self.state, self.left = DATA, size
                else:
                    self.state = TRAILER
        self._buf = buf[pos:] if self.state != DONE else b""
        return out


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """(status, {lower-case name: value}) of a response head (status line and header lines, CRLF-separated)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def open_stream(base_url: str, path: str, params: list[tuple[str, str]], *, connect_timeout: float = 10.0,
                      idle_timeout: float = 45.0) -> AsyncIterator[bytes]:
    """GET base_url + path?params and yield the body's bytes as they arrive (chunked, sized, or until close).

    StreamRefused for a status other than 200; ValueError for a malformed answer; OSError (TimeoutError
    included) for the network; the connection is closed when the iteration ends or is abandoned."""
    url = urlsplit(base_url)
    secure = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    target = (url.path.rstrip("/") + path) + ("?" + urlencode(params) if params else "")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl.create_default_context() if secure else None,
                                limit=MAX_HEAD), connect_timeout)
    try:
        netloc = url.netloc.rpartition("@")[2]
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nAccept: text/event-stream\r\n"
                     f"Cache-Control: no-cache\r\nUser-Agent: homestream-relay\r\n\r\n".encode("latin-1"))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), connect_timeout)
        except asyncio.LimitOverrunError:
            raise ValueError("response head too long") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the upstream closed the connection before answering") from None
        status, headers = parse_head(head[:-4])
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if status != 200:
            body = b""
            if length is not None and length.isdigit():
                body = await asyncio.wait_for(reader.read(min(int(length), 4096)), connect_timeout)
            raise StreamRefused(status, body)
        decoder = ChunkedDecoder() if chunked else None
        left = int(length) if length is not None and length.isdigit() and not chunked else None
        while True:
            data = await asyncio.wait_for(reader.read(1 << 16), idle_timeout)
            if not data:
                if decoder is not None and not decoder.done:
                    raise ConnectionResetError("the upstream closed the stream mid-body")
                return
            if decoder is not None:
                for part in decoder.feed(data):
                    yield part
                if decoder.done:
                    return
            else:
                if left is not None:
                    data = data[:left]
                    left -= len(data)
                yield data
                if left == 0:
                    return
    finally:
        writer.close()
