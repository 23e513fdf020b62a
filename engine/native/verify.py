"""ed25519 signature checks on C worker threads (csrc/verify.h), so the event loop never spends ~40 µs per signed
request inside libsodium.

The check is libsodium's `crypto_sign_open`, the very function pynacl calls, reached through a function pointer
taken from pynacl's compiled module: the pool adds threads and queues, no cryptography of its own. The workers are
plain pthreads that never touch Python, so they run beside the loop without waiting for the GIL.

Use: `submit(ticket, signature, message, public_key)` (False when the pool is full: check inline instead); when
`fileno()` turns readable, `harvest()` returns the [(ticket, ok)] answers that are ready. Both go through
CPython-API functions (csrc/pyfast.inc), not cffi: a cffi call releases the GIL, which lets another Python thread
(the log's committer) cut into the loop's request.

Invariants: every accepted submit is answered by exactly one harvest, unless the pool is closed first; one thread
(the loop) submits and harvests; `close()` stops the workers and is idempotent.
"""

from __future__ import annotations

from nacl._sodium import ffi as _nacl_ffi, lib as _nacl_lib

from . import hashing as _hashing  # noqa: F401  (its import installs the CPython-API functions of pyfast.inc)
from ._lib import ffi, lib

from engine import _native  # noqa: E402  (verify_submit/verify_harvest exist once hsFastInstall has run)

_submit = _native.verify_submit
_harvest = _native.verify_harvest

__all__ = ["SignatureVerifier", "SIGNATURE_BYTES", "KEY_BYTES", "MESSAGE_MAX"]

SIGNATURE_BYTES = lib.VERIFY_SIGNATURE_BYTES
KEY_BYTES = lib.VERIFY_KEY_BYTES
MESSAGE_MAX = 65536  # csrc/verify.c VERIFY_MESSAGE_MAX


def sodium_open():
    """libsodium's crypto_sign_open as a verifyOpenFn of our module (pynacl has called sodium_init on import)."""
    address = int(_nacl_ffi.cast("uintptr_t", _nacl_ffi.addressof(_nacl_lib, "crypto_sign_open")))
    return ffi.cast("verifyOpenFn", address)


def _check(signature: bytes, message: bytes, public_key: bytes) -> None:
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"a signature is {SIGNATURE_BYTES} bytes")
    if type(public_key) is not bytes or len(public_key) != KEY_BYTES:
        raise ValueError(f"a public key is {KEY_BYTES} bytes")
    if type(message) is not bytes or len(message) > MESSAGE_MAX:
        raise ValueError(f"a message is bytes of at most {MESSAGE_MAX}")


class SignatureVerifier:
    def __init__(self, threads: int = 1, capacity: int = 4096, open_fn=None):
        if not 1 <= threads <= 64:
            raise ValueError("threads must be in [1, 64]")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._open = open_fn if open_fn is not None else sodium_open()  # kept alive as long as the pool
        ptr = lib.verifyNew(self._open, threads, capacity)
        if ptr == ffi.NULL:
            err = ffi.errno
            raise MemoryError("verifyNew: out of memory") if err == 12 else OSError(err, "verifyNew failed")
        self._pool = ptr
        self._address = int(ffi.cast("uintptr_t", ptr))
        self.threads = threads
        self.capacity = capacity
        self._fd = lib.verifyNotifyFd(ptr)

    def fileno(self) -> int:
        self._live()
        return self._fd

    def submit(self, ticket: int, signature: bytes, message: bytes, public_key: bytes) -> bool:
        """Queue one check; False when the pool is full (the caller checks inline or refuses)."""
        if self._pool is None:
            raise ValueError("the verifier is closed")
        return _submit(self._address, ticket, signature, message, public_key)  # checks sizes and types itself

    def harvest(self) -> list[tuple[int, bool]]:
        """Every answer ready now, as (ticket, valid). Drains the notify pipe first (see csrc/verify.h)."""
        if self._pool is None:
            raise ValueError("the verifier is closed")
        return _harvest(self._address)

    def in_flight(self) -> int:
        return lib.verifyInFlight(self._live())

    def verify_now(self, signature: bytes, message: bytes, public_key: bytes) -> bool:
        """The same check, through the same C code the workers run, on the calling thread (tests compare it with
        pynacl; the server's inline path is pynacl's own)."""
        pool = self._live()
        _check(signature, message, public_key)
        rc = lib.verifyNow(pool, signature, message, len(message), public_key)
        if rc < 0:
            raise MemoryError("verifyNow: out of memory")
        return rc == 1

    def _live(self):
        if self._pool is None:
            raise ValueError("the verifier is closed")
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            lib.verifyFree(pool)

    def __enter__(self) -> "SignatureVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
