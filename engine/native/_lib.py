"""The one import of the compiled C core (engine._native), shared by the engine/native wrappers.

Invariant: nothing outside engine/native/ imports engine._native; build it in place with
`python csrc/build_ffi.py` (or `pip install .`). `as_buffer` gives C a pointer into any contiguous
bytes-like object without copying (bytes, bytearray, memoryview, mmap slices).
"""

from __future__ import annotations

try:
    from engine._native import ffi, lib
except ImportError as exc:  # pragma: no cover - a build problem, not a runtime branch
    raise ImportError(
        "engine._native is not built: run `python csrc/build_ffi.py` in the project root "
        f"(or `pip install .`): {exc}"
    ) from exc

__all__ = ["ffi", "lib", "as_buffer"]

_from_buffer = ffi.from_buffer


def as_buffer(data):
    """(pointer, length) for C over a bytes-like object; bytes pass straight through (cffi does not copy)."""
    if type(data) is bytes:
        return data, len(data)
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from None
    if not view.contiguous:
        raise TypeError("expected a contiguous buffer")
    return _from_buffer("char[]", view), view.nbytes
