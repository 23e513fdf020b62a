"""History scans in C (csrc/scan.c): the offsets of the records a history request wants in a raw log slice.

`Scanner.scan(slice, until, filter, max_examined)` walks the framed records of `slice` (as Log.read_raw yields
them) and returns the offsets of those that pass a `ScanFilter` (users with per-user seq bounds, a path prefix,
public records plus one reader's private ones); the caller decodes only those (engine/log/record.py decode_at).

Invariants:
- a scan examines at most `max_examined` records and returns at most the Scanner's `capacity` hits, stopping at
  a record boundary (`consumed`) from which the next scan resumes;
- CRCs are not checked (records were checked at recovery/append); malformed framing raises MalformedRecords
  (from engine/native/sse.py: the same error for the same slices);
- not thread-safe: one event loop owns a Scanner.
"""

from __future__ import annotations

from typing import Iterable

from ._lib import ffi, lib
from .sse import MalformedRecords

__all__ = ["ScanFilter", "Scanner", "MalformedRecords", "USER_SIZE"]

USER_SIZE = lib.SCAN_USER_SIZE
_MORE = lib.SCAN_MORE
_ERR = lib.SCAN_ERR
_from_buffer = ffi.from_buffer
_release = ffi.release
_scan = lib.scanRecords


def _user_bytes(user: str) -> bytes:
    if not isinstance(user, str):
        raise TypeError(f"a user id is a str, not {type(user).__name__}")
    b = user.encode("ascii") if user.isascii() else b""
    if len(b) != USER_SIZE:
        raise ValueError(f"a user id is {USER_SIZE} ASCII characters")
    return b


class ScanFilter:
    """Which records pass: `users` maps a user id to (after, before) -- seq > after and, unless before is 0,
    seq < before -- or is None for every user; the path starts with `prefix`; public records pass, and the
    private ones of `reader` when given."""

    __slots__ = ("_c", "_keep", "users", "prefix", "reader")

    def __init__(self, users: dict[str, tuple[int, int]] | None, prefix: str = "", reader: str | None = None):
        c = ffi.new("scanFilter *")
        keep: list = []
        if users:
            order = sorted(users, key=_user_bytes)
            blob = b"".join(_user_bytes(u) for u in order)
            after = ffi.new("uint64_t[]", [users[u][0] for u in order])
            before = ffi.new("uint64_t[]", [users[u][1] for u in order])
            c.users = ffi.from_buffer("char[]", blob)
            c.after, c.before, c.nusers = after, before, len(order)
            keep += [blob, c.users, after, before]
        else:
            c.users, c.after, c.before, c.nusers = ffi.NULL, ffi.NULL, ffi.NULL, 0
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        prefix_b = prefix.encode("utf-8")
        c.prefix = ffi.from_buffer("char[]", prefix_b) if prefix_b else ffi.NULL
        c.prefixlen = len(prefix_b)
        keep += [prefix_b, c.prefix]
        if reader is not None:
            r = ffi.from_buffer("char[]", _user_bytes(reader))
            keep.append(r)
            c.reader = r
        else:
            c.reader = ffi.NULL
        self._c = c
        self._keep = keep
        self.users = dict(users) if users else None
        self.prefix = prefix
        self.reader = reader


class Scanner:
    """A reusable hits buffer for scanRecords."""

    __slots__ = ("_hits", "_res", "capacity")

    def __init__(self, capacity: int = 4096):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, not {capacity!r}")
        self.capacity = capacity
        self._hits = ffi.new("uint64_t[]", capacity)
        self._res = ffi.new("scanResult *")

    def scan(self, data, until: int, filt: ScanFilter, max_examined: int,
             max_hits: int | None = None) -> tuple[bool, int, int, int, list[int]]:
        """(more, consumed, last_seq, examined, hit offsets): more is True when it stopped for the hits buffer
        (or `max_hits`) or for `max_examined`; resume at data[consumed:]."""
        if not 0 <= until <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"until must be a u64, not {until!r}")
        if type(filt) is not ScanFilter:
            raise TypeError("filt must be a ScanFilter")
        if not isinstance(max_examined, int) or max_examined < 0:
            raise ValueError(f"max_examined must be a non-negative int, not {max_examined!r}")
        cap = self.capacity if max_hits is None else max(0, min(max_hits, self.capacity))
        try:
            buf = _from_buffer("char[]", data)
        except TypeError:
            raise TypeError(f"expected a bytes-like object, not {type(data).__name__}") from None
        try:
            res = self._res
            rc = _scan(buf, len(buf), until, filt._c, max_examined, self._hits, cap, res)
            hits = list(ffi.unpack(self._hits, res.hits)) if res.hits else []
            if rc == _ERR:
                raise MalformedRecords(res.consumed)
            return rc == _MORE, res.consumed, res.lastSeq, res.examined, hits
        finally:
            _release(buf)


def users_filter(users: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Every user with no seq bounds (after 0, before 0)."""
    return {u: (0, 0) for u in users}
