"""Request and response values, and the pure functions that build and read them.

A Request is what a handler sees: method, decoded path, query, headers (lower-case names), body. A Response is
what a handler returns; the connection turns it into bytes with h11. Invariants: every error response is a JSON
body `{"error", "message"}`; CORS headers are added in one place (`cors_headers`); nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qsl

from ..errors import ClientError, InvalidName
from ..jsontext import dumps_bytes
from ..names import percent_decode

JSON_TYPE = b"application/json"
EXPOSE_HEADERS = b"ETag, Event-Id, Location"
ALLOW_METHODS = b"GET, HEAD, PUT, DELETE, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, If-None-Match, Last-Event-ID"
PREFLIGHT_MAX_AGE = b"86400"


@dataclass(slots=True)
class Request:
    method: str
    raw_target: bytes
    path: str  # percent-decoded, without the query
    query: list[tuple[str, str]]
    headers: dict[bytes, bytes]  # lower-case name -> value (last one wins; duplicates joined where allowed)
    body: bytes = b""
    http_version: bytes = b"1.1"
    peer: Any = None

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def arg(self, name: str) -> str | None:
        """The last value of a query parameter, or None."""
        found = None
        for key, value in self.query:
            if key == name:
                found = value
        return found

    def args(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    durable_seq: int = 0  # the response is sent only once the log is durable up to this seq
    cache_tag: Any = None  # set by storage_get on a cacheable answer: see engine/api/read_cache.py


@dataclass(slots=True)
class StreamResponse:
    """A response that takes over the connection (SSE). `start(stream)` is called once the head is sent."""

    status: int
    headers: list[tuple[bytes, bytes]]
    start: Callable[[Any], None]
    durable_seq: int = 0


def parse_target(raw_target: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Split a request target into (decoded path, query pairs); InvalidName for undecodable text."""
    if b"%" not in raw_target and b"?" not in raw_target and raw_target.isascii():
        return raw_target.decode("ascii"), []  # nothing to decode: the common case, and the same answer
    raw_path, _, raw_query = raw_target.partition(b"?")
    path = percent_decode(raw_path)
    try:
        query = parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidName("query string is not valid percent-encoded UTF-8") from None
    return path, query


def json_body(value: Any) -> bytes:
    """Strict JSON (engine/jsontext.py): ValueError for NaN/Infinity, line separators escaped."""
    return dumps_bytes(value)


def json_response(status: int, value: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, [(b"content-type", JSON_TYPE), *(headers or [])], json_body(value))


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})


def from_client_error(exc: ClientError) -> Response:
    response = error_response(exc.status, exc.code, exc.message)
    retry_after = getattr(exc, "retry_after", None)  # RateLimited (SPEC 5.2)
    if retry_after is not None:
        response.headers.append((b"retry-after", b"%d" % retry_after))
    return response


_cors_cache: dict[tuple[bytes | None, frozenset[bytes]], bytes] = {}


def cors_lines(origin: bytes | None, allowed: frozenset[bytes]) -> bytes:
    """cors_headers as encoded header lines, made once per (echoed origin, configured list): both are bounded by
    the configured list, so the cache is too."""
    echoed = origin if allowed and origin is not None and origin in allowed else None
    key = (echoed, allowed)
    lines = _cors_cache.get(key)
    if lines is None:
        lines = _cors_cache[key] = encode_header_lines(cors_headers(echoed, allowed))
    return lines


def cors_headers(origin: bytes | None, allowed: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """The headers that let a browser use every response (auth is a header, never a cookie)."""
    if not allowed:
        out = [(b"access-control-allow-origin", b"*")]
    elif origin is not None and origin in allowed:
        out = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
    else:
        out = [(b"vary", b"Origin")]
    out.append((b"access-control-expose-headers", EXPOSE_HEADERS))
    return out


def preflight_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-methods", ALLOW_METHODS),
        (b"access-control-allow-headers", ALLOW_HEADERS),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE),
    ]


_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
# h11's field-value rule (deliberately permissive, as its parser is): no NUL, no whitespace but runs of space and
# tab between visible parts. Matching it exactly means a value h11 accepted from a client can always be sent back.
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_checked_names: set[bytes] = set()  # header names already found to be tokens (names come from code: a few dozen)


def encode_header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """`name: value\r\n` lines for headers that h11 does not frame, with h11's own checks: a name must be a
    lower-case token and not a framing header (h11 owns Content-Length, Transfer-Encoding, Connection), a value
    must pass h11's field-value rule. ValueError otherwise."""
    out = []
    for name, value in headers:
        if name not in _checked_names:
            if not _TOKEN.fullmatch(name) or name.lower() in _FRAMING or name != name.lower():
                raise ValueError(f"header name {name!r} is not a lower-case token h11 leaves to us")
            _checked_names.add(name)
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f"header {name!r} has an unsafe value {value!r}")
        out.append(name + b": " + value + b"\r\n")
    return b"".join(out)


_heads: dict[tuple[int, bytes, int, bool], bytes] = {}
_HEADS_MAX = 4096


def encode_response_head(status: int, reason: bytes, length: int, close: bool) -> bytes:
    """The status line and framing headers exactly as h11 writes them for Response(status, [content-length:
    length]) when the connection is to close (`Connection: close`, as h11 adds it) or not, without the blank
    line; no Content-Length when length < 0 (204, 304 only). Cached: few distinct (status, length) pairs."""
    key = (status, reason, length, close)
    head = _heads.get(key)
    if head is None:
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if length >= 0:
            head += b"content-length: %d\r\n" % length
        if close:
            head += b"Connection: close\r\n"  # h11's spelling when it adds the header itself
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        _heads[key] = head
    return head


def splice_head(head: bytes, lines: bytes) -> bytes:
    """Insert header lines into a response head framed by h11 (status line, framing headers, blank line)."""
    if not head.endswith(b"\r\n\r\n"):
        raise ValueError("not a complete response head")
    return head[:-2] + lines + b"\r\n"


def raw_error_bytes(status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete `Connection: close` error response, for when h11 cannot frame one (bad framing, 503 at the door)."""
    body = json_body({"error": code, "message": message})
    reason = HTTPStatus(status).phrase.encode("ascii")
    head = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: application/json",
            b"content-length: %d" % len(body), b"connection: close"]
    head += [name + b": " + value for name, value in extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body
