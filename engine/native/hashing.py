"""Hashes of the C core: CRC32C for log records, MurmurHash3 for Bloom filters (SPEC 4.1).

Invariants:
- crc32c(data, value) continues a CRC: crc32c(b, crc32c(a)) == crc32c(a + b); crc32c(b"123456789") == 0xE3069283;
  it reads any contiguous bytes-like object (bytes, bytearray, memoryview, mmap slices) without copying.
- murmur3_x64_128 / murmur3_x86_32 are bit-identical to the `mmh3` package:
  mmh3.hash128(k, seed, True, False) == h2 << 64 | h1 and mmh3.hash(k, seed) == murmur3_x86_32(k, seed).
"""

from __future__ import annotations

from ._lib import ffi, lib

__all__ = ["crc32c", "crc32c_hardware", "murmur3_x64_128", "murmur3_x86_32"]

_crc_cffi = lib.crc32cUpdate
_from_buffer = ffi.from_buffer


def crc32c_cffi(data, value: int = 0) -> int:
    """crc32c through cffi: the reference the CPython-API `crc32c` below is tested against."""
    try:
        if type(data) is bytes:
            return _crc_cffi(value, data, len(data))
        buf = _from_buffer("char[]", data)
        return _crc_cffi(value, buf, len(buf))
    except OverflowError:
        raise ValueError(f"value must be a 32-bit unsigned CRC, not {value!r}") from None
    except TypeError:
        if not isinstance(value, int):
            raise TypeError(f"value must be an int, not {type(value).__name__}") from None
        raise TypeError(f"crc32c needs a bytes-like object, not {type(data).__name__}") from None


def crc32c_hardware() -> bool:
    """True when this CPU runs the SSE4.2 path."""
    return bool(lib.crc32cHardware())


# The MurmurHash3 entry points are CPython-API functions compiled into engine._native (csrc/pyfast.inc):
# a cffi call costs ~120 ns, more than hashing 32 bytes, and mmh3 is the yardstick.
if not lib.hsFastInstall():  # pragma: no cover - only if the module cannot be re-imported
    raise ImportError("engine._native: could not install the fast MurmurHash3 functions")

from engine import _native as _module  # noqa: E402  (the attributes exist only after hsFastInstall)

murmur3_x64_128 = _module.murmur3_x64_128
"""murmur3_x64_128(data, seed=0) -> (h1, h2): the low and high u64 words of MurmurHash3 x64-128."""

murmur3_x64_128_int = _module.murmur3_x64_128_int
"""murmur3_x64_128_int(data, seed=0) -> h2 << 64 | h1, exactly mmh3.hash128(data, seed, True, False)."""

murmur3_x86_32 = _module.murmur3_x86_32
"""murmur3_x86_32(data, seed=0) -> signed 32-bit int, exactly mmh3.hash(data, seed)."""

crc32c = _module.crc32c
"""crc32c(data, value=0) -> CRC32C (Castagnoli) of `data`, continuing from `value` (the CRC of the bytes
before it). A CPython-API function: it keeps the GIL, where a cffi call would hand it to a waiting thread."""

__all__ += ["murmur3_x64_128_int"]
