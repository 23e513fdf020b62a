"""Per-collection salt, 64-bit item keys and the order-independent set hash (docs/SYNC.md "Keys and salt").

Pure Python (BLAKE3 only): the server and the pure-Python client import this same module, so both derive the
same keys. What must stay true:
- collection_key(user, dir) is a pure function of the storage name, so a client computes it offline (no extra
  round trip); salt = its first 8 bytes little-endian, and the salt of the sketch symbols;
- item_key(ckey, digest) = BLAKE3 keyed by ckey over the 32-byte item digest, first 8 bytes little-endian: two
  items collide in one collection only by chance (or by grinding against that one collection's key), never
  across all collections at once;
- set_hash = (sum of the item digests read as little-endian 256-bit integers) mod 2^256, 32 bytes LE: any order,
  incrementally updatable (add on append, subtract on delete); equal sets give equal hashes.
"""

from __future__ import annotations

import blake3

from ..errors import InvalidName
from ..names import is_directory, split_key

SALT_CONTEXT = b"homestream sync v1 collection\n"
HASH_MOD = 1 << 256
_MASK64 = (1 << 64) - 1


def storage_text(user: str, dir_path: str) -> str:
    """The canonical storage name `<user><dir>/` (dir_path starts and ends with '/')."""
    return f"{user}{dir_path}"


def collection_key(user: str, dir_path: str) -> bytes:
    """32-byte BLAKE3 key of a collection; its first 8 bytes (LE) are the sketch salt."""
    return blake3.blake3(SALT_CONTEXT + storage_text(user, dir_path).encode("utf-8")).digest()


def salt_of(ckey: bytes) -> int:
    return int.from_bytes(ckey[:8], "little")


def item_key(ckey: bytes, digest: bytes) -> int:
    """The 64-bit sketch key of an item, from its 32-byte BLAKE3 digest."""
    return int.from_bytes(blake3.blake3(digest, key=ckey).digest(8), "little")


class KeyDeriver:
    """item_key for one collection, with the keyed hasher built once (about 3 µs per key)."""

    __slots__ = ("ckey", "salt", "_base")

    def __init__(self, ckey: bytes):
        self.ckey = ckey
        self.salt = salt_of(ckey)
        self._base = blake3.blake3(key=ckey)

    def __call__(self, digest: bytes) -> int:
        h = self._base.copy()
        h.update(digest)
        return int.from_bytes(h.digest(8), "little")


def digest_int(digest: bytes) -> int:
    return int.from_bytes(digest, "little")


def set_hash_bytes(total: int) -> bytes:
    return (total % HASH_MOD).to_bytes(32, "little")


def set_hash(digests) -> bytes:
    """Set hash of an iterable of 32-byte digests."""
    return set_hash_bytes(sum(int.from_bytes(d, "little") for d in digests))


def parse_storage(text: str) -> tuple[str, str]:
    """`<user><dir>/` (optionally with a leading '/' or pubky://) -> (user, dir); InvalidName (400) otherwise."""
    if not isinstance(text, str):
        raise InvalidName("a storage is <user><dir>/")
    if text.startswith("pubky://"):
        text = text[len("pubky://"):]
    user, path = split_key(text)
    if not is_directory(path) or path == "/":
        raise InvalidName(f"a storage is <user><dir>/ with a directory ending in '/', not {text!r}")
    return user, path
