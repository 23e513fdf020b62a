"""Bloom filters with the exact bit layout of SPEC 4.1, over csrc/bloom.c.

Invariants:
- key = a 32-byte digest (BLAKE3 of the item); (h1, h2) = MurmurHash3 x64-128 of it, seed 0; bit i of k is
  ((h1 + i*h2) mod 2^64) mod m, stored in byte j//8 at mask 1 << (j%8); m = 8 * len(to_bytes()).
- for_count(n, fp) sizes m = ceil(-n ln fp / ln^2 2) rounded up to whole bytes, at least 64 bits.
- a BloomFilter owns one C object: close() frees it (idempotent); the GC frees it too.
"""

from __future__ import annotations

from ._lib import ffi, lib

__all__ = ["BloomFilter", "DIGEST_SIZE", "DEFAULT_K", "bytes_for_count"]

DIGEST_SIZE = 32
DEFAULT_K = 7
MAX_K = 64


def bytes_for_count(n: int, fp: float = 0.01) -> int:
    """Filter size in bytes for n items at false-positive rate fp (SPEC 4.1 sizing)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"count must be a non-negative int, not {n!r}")
    if not 0.0 < fp < 1.0:
        raise ValueError(f"false-positive rate must be in (0, 1), not {fp!r}")
    size = lib.bloomBytesForCount(n, fp)
    if size == 0:
        raise ValueError(f"cannot size a filter for {n} items at {fp}")
    return size


def _check_k(k: int) -> int:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an int in [1, {MAX_K}], not {k!r}")
    return k


def _digest(key) -> bytes | object:
    if type(key) is not bytes:
        try:
            key = bytes(memoryview(key))
        except TypeError:
            raise TypeError(f"a Bloom key is a 32-byte digest, not {type(key).__name__}") from None
    if len(key) != DIGEST_SIZE:
        raise ValueError(f"a Bloom key is a {DIGEST_SIZE}-byte digest, got {len(key)} bytes")
    return key


class BloomFilter:
    """A SPEC 4.1 Bloom filter; `with BloomFilter.for_count(n) as f: f.add(digest)`."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, nbytes: int, k: int = DEFAULT_K):
        if not isinstance(nbytes, int) or nbytes < 8:
            raise ValueError(f"a filter has at least 8 bytes, not {nbytes!r}")
        _check_k(k)
        ptr = lib.bloomNew(nbytes, k)
        if ptr == ffi.NULL:
            raise MemoryError("bloomNew failed")
        self._ptr = ffi.gc(ptr, lib.bloomFree)

    @classmethod
    def for_count(cls, n: int, fp: float = 0.01, k: int = DEFAULT_K) -> "BloomFilter":
        return cls(bytes_for_count(n, fp), k)

    @classmethod
    def from_bytes(cls, data, k: int = DEFAULT_K) -> "BloomFilter":
        _check_k(k)
        try:
            buf = ffi.from_buffer("char[]", data)
        except TypeError:
            raise TypeError(f"filter bytes must be bytes-like, not {type(data).__name__}") from None
        if len(buf) < 8:
            raise ValueError(f"a filter has at least 8 bytes, got {len(buf)}")
        ptr = lib.bloomFromBytes(buf, len(buf), k)
        if ptr == ffi.NULL:
            raise MemoryError("bloomFromBytes failed")
        self = cls.__new__(cls)
        self._ptr = ffi.gc(ptr, lib.bloomFree)
        return self

    def _live(self):
        ptr = self._ptr
        if ptr is None:
            raise ValueError("this BloomFilter is closed")
        return ptr

    @property
    def m(self) -> int:
        return self._live().m

    @property
    def k(self) -> int:
        return self._live().k

    @property
    def nbytes(self) -> int:
        return self._live().nbytes

    def to_bytes(self) -> bytes:
        ptr = self._live()
        return bytes(ffi.buffer(ptr.bits, ptr.nbytes))

    def add(self, digest) -> None:
        lib.bloomAdd(self._live(), _digest(digest), DIGEST_SIZE)

    def add_many(self, digests) -> None:
        """Add the 32-byte digests concatenated in one bytes-like buffer."""
        buf = ffi.from_buffer("char[]", digests)
        if len(buf) % DIGEST_SIZE:
            raise ValueError(f"add_many needs a multiple of {DIGEST_SIZE} bytes, got {len(buf)}")
        lib.bloomAddMany(self._live(), buf, len(buf) // DIGEST_SIZE, DIGEST_SIZE)

    def __contains__(self, digest) -> bool:
        return bool(lib.bloomCheck(self._live(), _digest(digest), DIGEST_SIZE))

    def contains_many(self, digests) -> list[bool]:
        """Membership of each 32-byte digest of a concatenated buffer."""
        buf = ffi.from_buffer("char[]", digests)
        if len(buf) % DIGEST_SIZE:
            raise ValueError(f"contains_many needs a multiple of {DIGEST_SIZE} bytes, got {len(buf)}")
        count = len(buf) // DIGEST_SIZE
        out = ffi.new("unsigned char[]", max(count, 1))
        lib.bloomCheckMany(self._live(), buf, count, DIGEST_SIZE, out)
        return [bool(b) for b in ffi.unpack(out, count)]

    def positions(self, digest) -> list[int]:
        """The k bit positions of a key (for tests and for clients checking their layout)."""
        ptr = self._live()
        out = ffi.new("uint64_t[]", ptr.k)
        lib.bloomPositions(ptr, _digest(digest), DIGEST_SIZE, out)
        return list(out)

    def union(self, other: "BloomFilter") -> "BloomFilter":
        """A new filter with the bits of both; same m and k required."""
        if not isinstance(other, BloomFilter):
            raise TypeError("union needs another BloomFilter")
        a, b = self._live(), other._live()
        if a.m != b.m or a.k != b.k:
            raise ValueError(f"cannot unite filters of (m={a.m}, k={a.k}) and (m={b.m}, k={b.k})")
        result = BloomFilter.from_bytes(self.to_bytes(), a.k)
        if not lib.bloomUnion(result._ptr, b):  # pragma: no cover - checked above
            raise ValueError("bloomUnion refused the filters")
        return result

    def update(self, other: "BloomFilter") -> None:
        """In place: self |= other."""
        if not isinstance(other, BloomFilter):
            raise TypeError("update needs another BloomFilter")
        if not lib.bloomUnion(self._live(), other._live()):
            raise ValueError("cannot unite filters of different m or k")

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.release(ptr)

    def __enter__(self) -> "BloomFilter":
        self._live()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<BloomFilter closed>"
        return f"<BloomFilter m={self.m} k={self.k}>"
