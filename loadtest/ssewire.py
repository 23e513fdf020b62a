"""Pure, incremental parsing of an SSE response for the load tests (locustfile.py, soak.py): HTTP/1.1 head,
chunked transfer decoding, SSE frames, and the per-connection seq checker. No sockets here (sans-IO, as h11):
feed bytes, get events; tests/loadtest/test_ssewire.py covers the edges (splits anywhere, CRLF, comments).

The checker holds the contract the load tests verify (SPEC 3.2-3.3): on one logical subscriber (across
reconnects with Last-Event-ID) the seqs delivered are strictly increasing and contiguous, except where an
`event: gap` frame names exactly the missing range; nothing twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCK = {c: i for i, c in enumerate(CROCKFORD)}


def crockford_seq(event_id: str) -> int:
    """The seq of an event id `<13-char Crockford>.<user>` (or the bare 13 chars)."""
    v = 0
    for c in event_id.split(".", 1)[0]:
        v = v * 32 + _CROCK[c]
    return v


def crockford_id(seq: int) -> str:
    out = []
    for _ in range(13):
        out.append(CROCKFORD[seq & 31])
        seq >>= 5
    return "".join(reversed(out))


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self):
        return json.loads(self.data)


class ResponseHead:
    """Collects the status line and headers; `feed` returns the body bytes that followed them, or None."""

    def __init__(self) -> None:
        self.buf = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes | None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                raise ValueError("response head over 64 KiB")
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line {lines[0]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        rest = self.buf[end + 4:]
        self.buf = b""
        return rest

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoder. `finished` after the zero-size chunk."""

    def __init__(self) -> None:
        self.buf = b""
        self.remaining = 0  # bytes of chunk data still to come
        self.need_crlf = False
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while not self.finished:
            if self.remaining:
                take = self.buf[:self.remaining]
                out.append(take)
                self.remaining -= len(take)
                self.buf = self.buf[len(take):]
                if self.remaining:
                    break
                self.need_crlf = True
            if self.need_crlf:
                if len(self.buf) < 2:
                    break
                if self.buf[:2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                self.buf = self.buf[2:]
                self.need_crlf = False
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            size_text = self.buf[:end].split(b";", 1)[0].strip()
            size = int(size_text, 16)
            self.buf = self.buf[end + 2:]
            if size == 0:
                self.finished = True
                break
            self.remaining = size
        return b"".join(out)


class SSEParser:
    """Incremental SSE parser (WHATWG rules: CRLF, LF or CR line ends; `:` comments; `field: value`)."""

    def __init__(self) -> None:
        self.buf = ""
        self.pending: bytes = b""
        self.cur = Event()
        self.has_fields = False
        self.data_lines: list[str] = []
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[Event]:
        data = self.pending + data
        # keep an incomplete UTF-8 sequence at the end for the next feed
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue
            if b >= 0xC0:
                need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                if need > back:
                    cut = len(data) - back
            break
        self.pending = data[cut:]
        self.buf += data[:cut].decode("utf-8")
        events: list[Event] = []
        while True:
            i = min((p for p in (self.buf.find("\r"), self.buf.find("\n")) if p >= 0), default=-1)
            if i < 0:
                break
            if self.buf[i] == "\r":
                if i + 1 == len(self.buf):
                    break  # a CR at the end may be the first half of CRLF
                step = 2 if self.buf[i + 1] == "\n" else 1
            else:
                step = 1
            line, self.buf = self.buf[:i], self.buf[i + step:]
            ev = self._line(line)
            if ev is not None:
                events.append(ev)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            if not self.has_fields:
                return None
            ev = self.cur
            ev.data = "\n".join(self.data_lines)
            self.cur = Event(id=ev.id)  # the last event id persists
            self.data_lines = []
            self.has_fields = False
            return ev
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self.data_lines.append(value)
            self.has_fields = True
        elif name == "event":
            self.cur.event = value
            self.has_fields = True
        elif name == "id":
            self.cur.id = value
            self.has_fields = True
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


class Stream:
    """Head + optional chunked decoding + SSE in one: `feed(socket bytes) -> events`."""

    def __init__(self) -> None:
        self.head = ResponseHead()
        self.chunks: ChunkedDecoder | None = None
        self.sse = SSEParser()
        self.started = False

    def feed(self, data: bytes) -> list[Event]:
        if not self.started:
            rest = self.head.feed(data)
            if rest is None:
                return []
            self.started = True
            if self.head.status != 200:
                raise ValueError(f"HTTP {self.head.status}: {rest[:200]!r}")
            if self.head.chunked:
                self.chunks = ChunkedDecoder()
            data = rest
        if self.chunks is not None:
            data = self.chunks.feed(data)
        return self.sse.feed(data)

    @property
    def finished(self) -> bool:
        return self.chunks is not None and self.chunks.finished


@dataclass
class SeqChecker:
    """Per logical subscriber. `expect` is the next seq owed (None until the first event of a live-only start).
    `observe` returns a list of problems (empty when fine)."""

    expect: int | None = None
    received: int = 0
    gaps_named: int = 0
    problems: list[str] = field(default_factory=list)

    def gap(self, start: int, end: int) -> list[str]:
        out = []
        if self.expect is not None and start != self.expect:
            out.append(f"gap frame from {start}, expected it from {self.expect}")
        self.gaps_named += max(0, end - start + 1)
        self.expect = end + 1
        self.problems += out
        return out

    def observe(self, seq: int) -> list[str]:
        out = []
        if self.expect is not None:
            if seq < self.expect:
                out.append(f"duplicate or out of order: seq {seq} after {self.expect - 1}")
            elif seq > self.expect:
                out.append(f"gap: seqs {self.expect}..{seq - 1} missing")
        if self.expect is None or seq >= self.expect:
            self.expect = seq + 1
        self.received += 1
        self.problems += out
        return out
