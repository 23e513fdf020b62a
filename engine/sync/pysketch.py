"""A pure-Python twin of the rateless IBLT coded symbols of csrc/riblt.[ch] (encoding side only).

For clients without the C build (engine/client/sync.py). What must stay true: symbols are bit-identical to
engine.native.sketch.Sketch for the same (salt, keys, size) — the walk below is the integer definition written
in csrc/riblt.h (the float estimate only speeds up the search; the exact test decides), and to_bytes() is the
same wire form (key u64 LE | check u32 LE | zigzag LEB128 count). tests/sync/test_pysketch.py checks both
against the C core.
"""

from __future__ import annotations

import math
import struct

_M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
INDEX_LIMIT = 1 << 31
_PACK = struct.Struct("<QI").pack


def mix(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def check(salt: int, key: int) -> int:
    return mix(key ^ salt) & 0xFFFFFFFF


def walk(salt: int, key: int, limit: int):
    """Indices of key's walk below `limit`: 0 first, then increasing."""
    state = mix(key ^ salt ^ GOLDEN)
    i = 0
    sqrt = math.sqrt
    while i < limit:
        yield i
        state = (state + GOLDEN) & _M64
        r = mix(state) or 1
        est = (i + 1.5) / sqrt(r * 5.421010862427522e-20) - 1.5
        if not est < INDEX_LIMIT:
            return
        j = i + 1 if est < i + 1 else int(est)
        lhs = ((i + 1) * (i + 2)) << 64
        while j > i + 1 and (j * (j + 1)) * r > lhs:
            j -= 1
        while not ((j + 1) * (j + 2)) * r > lhs:
            j += 1
            if j >= INDEX_LIMIT:
                return
        i = j


def zigzag_varint(count: int) -> bytes:
    z = ((count << 1) ^ (count >> 63)) & _M64
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class PySketch:
    """The first `size` coded symbols of a set of 64-bit keys, kept incrementally (add, remove, extend)."""

    __slots__ = ("salt", "size", "keys", "checks", "counts", "_members")

    def __init__(self, salt: int, size: int = 0):
        self.salt = salt & _M64
        self.size = 0
        self.keys: list[int] = []
        self.checks: list[int] = []
        self.counts: list[int] = []
        self._members: list[int] = []  # every key added (for extend)
        self.extend(size)

    def _apply(self, key: int, sign: int, lo: int, hi: int) -> None:
        chk = check(self.salt, key)
        keys, checks, counts = self.keys, self.checks, self.counts
        for i in walk(self.salt, key, hi):
            if i >= lo:
                keys[i] ^= key
                checks[i] ^= chk
                counts[i] += sign

    def add(self, key: int) -> None:
        self._members.append(key)
        self._apply(key, 1, 0, self.size)

    def add_many(self, keys) -> None:
        for key in keys:
            self.add(key)

    def remove(self, key: int) -> None:
        self._members.remove(key)
        self._apply(key, -1, 0, self.size)

    def extend(self, size: int) -> None:
        if size <= self.size:
            return
        old = self.size
        grow = size - old
        self.keys.extend([0] * grow)
        self.checks.extend([0] * grow)
        self.counts.extend([0] * grow)
        self.size = size
        for key in self._members:
            self._apply(key, 1, old, size)

    def symbol(self, i: int) -> tuple[int, int, int]:
        return self.keys[i], self.checks[i], self.counts[i]

    def to_bytes(self, start: int = 0, count: int | None = None) -> bytes:
        if count is None:
            count = self.size - start
        if start < 0 or count < 0 or start + count > self.size:
            raise ValueError(f"symbols [{start}, {start}+{count}) are not within [0, {self.size})")
        keys, checks, counts = self.keys, self.checks, self.counts
        return b"".join(_PACK(keys[i], checks[i]) + zigzag_varint(counts[i]) for i in range(start, start + count))
