"""History replay in C (csrc/sse.c): SSE frames straight from raw slices of framed log records.

`Replayer.feed(slice, until, filter, soft)` appends to one preallocated output buffer the frames that
engine.http.sse.event_frame would make for the records of `slice` (as Log.read_raw yields them) with
seq <= until that pass a `ReplayFilter` (one subscription pattern, see csrc/sse.h); `take()` returns the bytes
written since the last take. The input is read in place (ffi.from_buffer, no copy).

Invariants:
- the output never overflows: the buffer holds `soft_max` bytes plus one largest frame (SSE_FRAME_MAX), so while
  fill + soft <= soft_max a feed always makes progress; it stops after the frame that brings the bytes of this
  feed to >= soft (or, past that, before a frame that does not fit: `more` with nothing done);
- CRCs are not checked (records were checked at recovery/append); malformed framing raises MalformedRecords
  and nothing of the bad record is written;
- not thread-safe: one event loop owns a Replayer (it is reused by every call of its call site).
"""

from __future__ import annotations

from ._lib import ffi, lib

__all__ = ["ReplayFilter", "Replayer", "MalformedRecords", "FRAME_MAX", "USER_SIZE"]

FRAME_MAX = lib.SSE_FRAME_MAX
USER_SIZE = lib.SSE_USER_SIZE
_MORE = lib.SSE_MORE
_ERR = lib.SSE_ERR
_from_buffer = ffi.from_buffer
_replay = lib.sseReplay
_buffer = ffi.buffer
_release = ffi.release


class MalformedRecords(ValueError):
    """A raw slice whose framing is broken at `offset` (length, magic, kind, field lengths or user id)."""

    def __init__(self, offset: int):
        super().__init__(f"malformed log record at offset {offset} of the slice")
        self.offset = offset


class ReplayFilter:
    """One pattern for sseReplay: user (52-char id, or None for every user), path, prefix or exact, and whether
    private (non-/pub/) records of that user pass (the caller checked the reader is that user)."""

    __slots__ = ("_c", "_keep", "user", "path", "prefix", "allow_private")

    def __init__(self, user: str | None, path: str, prefix: bool, allow_private: bool = False):
        if user is not None:
            if not isinstance(user, str):
                raise TypeError(f"user must be a str or None, not {type(user).__name__}")
            user_b = user.encode("ascii") if user.isascii() else b""
            if len(user_b) != USER_SIZE:
                raise ValueError(f"a user id is {USER_SIZE} ASCII characters")
        else:
            user_b = None
            if allow_private:
                raise ValueError("private records pass only for a pattern naming one user")
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        path_b = path.encode("utf-8")
        c = ffi.new("sseFilter *")
        keep = [path_b]
        c.path = ffi.from_buffer("char[]", path_b) if path_b else ffi.NULL
        keep.append(c.path)
        c.pathlen = len(path_b)
        if user_b is not None:
            u = ffi.from_buffer("char[]", user_b)
            keep += [user_b, u]
            c.user = u
        else:
            c.user = ffi.NULL
        c.prefix = 1 if prefix else 0
        c.allowPrivate = 1 if allow_private else 0
        self._c = c
        self._keep = keep
        self.user, self.path, self.prefix, self.allow_private = user, path, bool(prefix), bool(allow_private)

    def __repr__(self) -> str:
        kind = "prefix" if self.prefix else "exact"
        return f"ReplayFilter(user={self.user!r}, path={self.path!r}, {kind}, private={self.allow_private})"


class Replayer:
    """A reusable output buffer for sseReplay: feed slices, then take() the frames as one bytes object."""

    __slots__ = ("_out", "_res", "cap", "soft_max", "fill")

    def __init__(self, soft_max: int = 256 * 1024):
        if not isinstance(soft_max, int) or soft_max < 0:
            raise ValueError(f"soft_max must be a non-negative int, not {soft_max!r}")
        self.soft_max = soft_max
        self.cap = soft_max + FRAME_MAX
        self._out = ffi.new("char[]", self.cap)
        self._res = ffi.new("sseResult *")
        self.fill = 0

    def feed(self, data, until: int, filt: ReplayFilter, soft: int | None = None):
        """Append the frames of `data`'s records; returns
        (more, consumed, last_seq, frames, frame_seq, frame_user):
        more is True when it stopped for the output budget (resume at data[consumed:]), last_seq the seq of the
        last record examined (0: none), frame_seq/frame_user those of the last frame (None when frames == 0)."""
        if soft is None:
            soft = self.soft_max
        if not isinstance(soft, int) or soft < 0:
            raise ValueError(f"soft must be a non-negative int, not {soft!r}")
        if not 0 <= until <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"until must be a u64, not {until!r}")
        if type(filt) is not ReplayFilter:
            raise TypeError("filt must be a ReplayFilter")
        try:
            buf = _from_buffer("char[]", data)
        except TypeError:
            raise TypeError(f"expected a bytes-like object, not {type(data).__name__}") from None
        try:
            n = len(buf)
            fill = self.fill
            res = self._res
            rc = _replay(buf, n, until, filt._c, self._out + fill, self.cap - fill, soft, res)
            self.fill = fill + res.written
            frames = res.frames
            if rc == _ERR:  # the frames before the bad record stay in the buffer
                raise MalformedRecords(res.consumed)
            if frames:
                u = res.frameUser
                return (rc == _MORE, res.consumed, res.lastSeq, frames, res.frameSeq,
                        _buffer(buf + u, USER_SIZE)[:].decode("ascii"))
            return rc == _MORE, res.consumed, res.lastSeq, 0, None, None
        finally:
            _release(buf)  # no export left on the caller's buffer (an mmap can then be closed), error or not

    def take(self) -> bytes:
        """The frames written since the last take (or reset), and start over."""
        data = _buffer(self._out, self.fill)[:]
        self.fill = 0
        return data

    def reset(self) -> None:
        self.fill = 0
