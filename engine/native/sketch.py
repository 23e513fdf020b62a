"""Set reconciliation sketches over 64-bit keys: rateless IBLT coded symbols (csrc/riblt.c, docs/SYNC.md).

Sketch is a run of coded symbols 0..n-1 of a set (or of a difference of two sets, after subtract);
SketchEncoder is what the server keeps per collection: the keys plus the first N symbols, updated as items are
appended and extended on demand, so any prefix a client asks for is ready.

Invariants:
- symbols are determined by (salt, set) alone: the same keys in any order give the same bytes, and a prefix of a
  longer sketch equals the shorter sketch, so two sides agree without negotiating a size;
- decode() never reports complete=True unless every symbol peeled to zero (a keyed 32-bit check per symbol plus
  a walk-membership test guard against false pure symbols; the protocol still compares counts and set hashes);
- the wire form is the one csrc/riblt.h documents (key u64 LE | check u32 LE | zigzag varint count);
- each object owns one C sketch: close() (idempotent), `with`, and the GC frees it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Iterable

from ._lib import ffi, lib

__all__ = ["Sketch", "SketchEncoder", "DecodeResult", "symbol_wire_size", "SYMBOL_MAX_BYTES"]

SYMBOL_MAX_BYTES = lib.RIBLT_SYMBOL_MAX_BYTES
_MASK64 = (1 << 64) - 1
_MAX_SYMBOLS = 1 << 30
_ENOMEM, _EINVAL, _ERANGE = 12, 22, 34


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """complete: every symbol peeled to zero; only_a / only_b: keys found on one side only."""

    complete: bool
    only_a: list[int]
    only_b: list[int]


def _check_key(key) -> int:
    if not isinstance(key, int) or isinstance(key, bool):
        raise TypeError(f"a sketch key is an int, not {type(key).__name__}")
    if not 0 <= key <= _MASK64:
        raise ValueError(f"a sketch key is an unsigned 64-bit int, not {key}")
    return key


def _check_salt(salt) -> int:
    if not isinstance(salt, int) or not 0 <= salt <= _MASK64:
        raise ValueError(f"salt must be an unsigned 64-bit int, not {salt!r}")
    return salt


def _check_size(n) -> int:
    if not isinstance(n, int) or not 0 <= n <= _MAX_SYMBOLS:
        raise ValueError(f"a sketch holds 0 .. 2^30 symbols, not {n!r}")
    return n


def _keys_buffer(keys):
    """(cdata uint64_t*, count, keepalive) for an array('Q'), a buffer of u64, or an iterable of ints."""
    if isinstance(keys, array) and keys.typecode in ("Q", "L") and keys.itemsize == 8:
        arr = keys
    elif isinstance(keys, (bytes, bytearray, memoryview)):
        view = memoryview(keys).cast("B")
        if view.nbytes % 8:
            raise ValueError(f"a key buffer holds 8-byte keys, got {view.nbytes} bytes")
        arr = array("Q")
        arr.frombytes(view)
    else:
        try:
            arr = array("Q", keys)
        except OverflowError:
            raise ValueError("sketch keys are unsigned 64-bit ints") from None
        except TypeError:
            raise TypeError("sketch keys are ints (or an array('Q') / buffer of u64)") from None
    if not len(arr):
        return ffi.NULL, 0, arr
    return ffi.from_buffer("uint64_t[]", arr), len(arr), arr


def symbol_wire_size(count: int) -> int:
    """Bytes of one serialised symbol with this count: 12 + the zigzag varint."""
    z = (count << 1) ^ (count >> 63)
    z &= _MASK64
    size = 13
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def _wrap(ptr):
    if ptr == ffi.NULL:
        if ffi.errno == _EINVAL:
            raise ValueError("invalid sketch size")
        raise MemoryError("out of memory for a sketch")
    return ffi.gc(ptr, lib.ribltFree)


class Sketch:
    """A run of rateless IBLT coded symbols (indices 0 .. len-1) under one salt."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, size: int = 0, salt: int = 0):
        self._ptr = _wrap(lib.ribltNew(_check_salt(salt), _check_size(size)))

    @classmethod
    def _adopt(cls, ptr) -> "Sketch":
        self = cls.__new__(cls)
        self._ptr = _wrap(ptr)
        return self

    @classmethod
    def from_keys(cls, keys, size: int, salt: int = 0) -> "Sketch":
        s = cls(size, salt)
        s.add_many(keys)
        return s

    @classmethod
    def from_bytes(cls, data, salt: int = 0) -> "Sketch":
        s = cls(0, salt)
        s.append_bytes(data)
        return s

    def _live(self):
        if self._ptr is None:
            raise ValueError("this Sketch is closed")
        return self._ptr

    @property
    def salt(self) -> int:
        return self._live().salt

    def __len__(self) -> int:
        return self._live().n

    # ---- set changes ----

    def add(self, key: int) -> None:
        lib.ribltUpdate(self._live(), _check_key(key), 1)

    def remove(self, key: int) -> None:
        lib.ribltUpdate(self._live(), _check_key(key), -1)

    def add_many(self, keys) -> None:
        ptr, n, _keep = _keys_buffer(keys)
        lib.ribltUpdateMany(self._live(), ptr, n, 1)

    def remove_many(self, keys) -> None:
        ptr, n, _keep = _keys_buffer(keys)
        lib.ribltUpdateMany(self._live(), ptr, n, -1)

    def extend(self, size: int, keys) -> None:
        """Grow to `size` symbols; `keys` must be the whole set these symbols encode."""
        _check_size(size)
        ptr, n, _keep = _keys_buffer(keys)
        if not lib.ribltExtend(self._live(), size, ptr, n):
            raise MemoryError("ribltExtend: out of memory") if ffi.errno == _ENOMEM else ValueError("bad size")

    # ---- algebra ----

    def copy(self, size: int | None = None) -> "Sketch":
        """A new sketch with the first `size` symbols (all by default)."""
        ptr = self._live()
        size = ptr.n if size is None else _check_size(size)
        if size > ptr.n:
            raise ValueError(f"this sketch has {ptr.n} symbols, cannot copy {size}")
        return Sketch._adopt(lib.ribltCopy(ptr, size))

    def subtract(self, other: "Sketch") -> "Sketch":
        """In place: self -= other over self's symbols (other needs at least as many, same salt)."""
        if not isinstance(other, Sketch):
            raise TypeError("subtract needs another Sketch")
        a, b = self._live(), other._live()
        if a.salt != b.salt:
            raise ValueError("sketches with different salts cannot be subtracted")
        if b.n < a.n:
            raise ValueError(f"the subtrahend has {b.n} symbols, fewer than {a.n}")
        lib.ribltSubtract(a, b)
        return self

    def __sub__(self, other: "Sketch") -> "Sketch":
        return self.copy().subtract(other)

    def decode(self) -> DecodeResult:
        """Peel a copy of this (difference) sketch: keys with count +1 are only in A, -1 only in B."""
        ptr = self._live()
        work = lib.ribltCopy(ptr, ptr.n)
        if work == ffi.NULL:
            raise MemoryError("out of memory copying a sketch to decode")
        try:
            cap = ptr.n + 1
            out_a = ffi.new("uint64_t[]", cap)
            out_b = ffi.new("uint64_t[]", cap)
            counts = ffi.new("size_t[2]")
            done = lib.ribltDecode(work, out_a, cap, counts, out_b, cap, counts + 1)
            err = ffi.errno
        finally:
            lib.ribltFree(work)
        if not done and err == _ENOMEM:
            raise MemoryError("out of memory decoding a sketch")
        return DecodeResult(bool(done), ffi.unpack(out_a, counts[0]), ffi.unpack(out_b, counts[1]))

    def is_empty(self) -> bool:
        return bool(lib.ribltIsEmpty(self._live()))

    def symbol(self, index: int) -> tuple[int, int, int]:
        """(key xor, check xor, count) of one symbol."""
        ptr = self._live()
        if not isinstance(index, int) or not 0 <= index < ptr.n:
            raise IndexError(f"symbol {index!r} out of range(0, {ptr.n})")
        y = ptr.sym[index]
        return y.key, y.check, y.count

    # ---- wire ----

    def to_bytes(self, start: int = 0, count: int | None = None) -> bytes:
        """Symbols [start, start + count) in wire form (csrc/riblt.h)."""
        ptr = self._live()
        if count is None:
            count = ptr.n - start
        if not (isinstance(start, int) and isinstance(count, int) and 0 <= start and 0 <= count
                and start + count <= ptr.n):
            raise ValueError(f"symbols [{start}, {start}+{count}) are not within [0, {ptr.n})")
        cap = max(1, count * SYMBOL_MAX_BYTES)
        out = ffi.new("unsigned char[]", cap)
        written = ffi.new("size_t *")
        if not lib.ribltSerialize(ptr, start, count, out, cap, written):  # pragma: no cover - cap is the maximum
            raise ValueError("ribltSerialize failed")
        return ffi.unpack(ffi.cast("char *", out), written[0])

    def append_bytes(self, data) -> int:
        """Parse whole wire symbols and append them after the last one; returns how many were added."""
        try:
            buf = ffi.from_buffer("char[]", data)
        except TypeError:
            raise TypeError(f"symbols come as bytes, not {type(data).__name__}") from None
        added = ffi.new("size_t *")
        if not lib.ribltAppendSymbols(self._live(), buf, len(buf), added):
            if ffi.errno == _ENOMEM:
                raise MemoryError("out of memory appending symbols")
            raise ValueError("malformed sketch symbols (truncated symbol or bad varint)")
        return added[0]

    # ---- life ----

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.release(ptr)

    def __enter__(self) -> "Sketch":
        self._live()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SketchEncoder:
    """The server side of one collection: its keys and the first `size` symbols, kept current as keys arrive."""

    __slots__ = ("_keys", "_sketch")

    def __init__(self, keys: Iterable[int] | array = (), size: int = 64, salt: int = 0):
        ptr, n, arr = _keys_buffer(keys)
        self._keys = array("Q", arr) if arr is keys else arr
        self._sketch = Sketch(size, salt)
        self._sketch.add_many(self._keys)

    @property
    def salt(self) -> int:
        return self._sketch.salt

    def __len__(self) -> int:
        """Keys encoded."""
        return len(self._keys)

    @property
    def size(self) -> int:
        """Symbols kept."""
        return len(self._sketch)

    def add(self, key: int) -> None:
        self._sketch.add(key)
        self._keys.append(key)

    def add_many(self, keys) -> None:
        _p, _n, arr = _keys_buffer(keys)
        self._sketch.add_many(arr)
        self._keys.extend(arr)

    def ensure(self, size: int) -> None:
        """Keep at least `size` symbols (extending by doubling, so repeated asks stay cheap)."""
        if size > len(self._sketch):
            self._sketch.extend(max(size, 2 * len(self._sketch)), self._keys)

    def prefix(self, size: int) -> Sketch:
        """A new Sketch of the first `size` symbols."""
        self.ensure(size)
        return self._sketch.copy(size)

    def to_bytes(self, start: int, count: int) -> bytes:
        self.ensure(start + count)
        return self._sketch.to_bytes(start, count)

    def close(self) -> None:
        self._sketch.close()

    def __enter__(self) -> "SketchEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
