"""The subscription index of SPEC 3.1: which subscriber ids want an event, over two C tries (csrc/trie.c).

- the user trie holds patterns naming one user, keyed by (user + path).encode('utf-8');
- the path trie holds all-user patterns (`*/...` and `*`), keyed by path.encode('utf-8');
  `*` is (user=None, path='/', prefix=True).
Exact patterns are EXACT entries, `.../*` patterns PREFIX entries on the path up to and including the last '/'.

Invariants:
- match(user, path) returns every id with a matching pattern, each id once (deduplicated across both tries),
  in one C call, with no allocation that grows with the index; its cost is O(key length + matches).
- the index holds integer ids only (0 .. 2^32-2), never Python objects; the caller maps ids to subscribers and
  applies visibility (private paths only for their owner) itself.
- patterns come from engine.names.parse_pattern, which rejects whatever SPEC 3.1 forbids before C sees it.
- adding an (id, pattern) twice is a no-op (add returns False); removing an absent one returns False.
- not thread-safe: one event loop owns an index (match reuses one output buffer).
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from typing import Iterable

from engine.names import Pattern, parse_pattern

from ._lib import ffi, lib

__all__ = ["SubscriptionIndex", "MAX_ID"]

MAX_ID = 0xFFFFFFFE
_EXACT = lib.TRIE_EXACT
_PREFIX = lib.TRIE_PREFIX


def _check_id(sub_id) -> int:
    if not isinstance(sub_id, int) or isinstance(sub_id, bool):
        raise TypeError(f"a subscriber id is an int, not {type(sub_id).__name__}")
    if not 0 <= sub_id <= MAX_ID:
        raise ValueError(f"a subscriber id is in [0, {MAX_ID}], not {sub_id}")
    return sub_id


def _check_pattern(pattern) -> Pattern:
    if isinstance(pattern, str):
        return parse_pattern(pattern)
    if not isinstance(pattern, Pattern):
        raise TypeError(f"expected an engine.names.Pattern (or its text), not {type(pattern).__name__}")
    return pattern


def _new_trie():
    ptr = lib.trieNew()
    if ptr == ffi.NULL:
        raise MemoryError("trieNew failed")
    return ffi.gc(ptr, lib.trieFree)


class SubscriptionIndex:
    """Two C tries plus a reusable match buffer; `with SubscriptionIndex() as idx: idx.add(7, pattern)`."""

    __slots__ = ("_users", "_paths", "_buf", "_ids", "_cap", "_closed", "__weakref__")

    def __init__(self, match_capacity: int = 256):
        self._users = _new_trie()
        self._paths = _new_trie()
        buf = lib.trieMatchBufNew(max(16, int(match_capacity)))
        if buf == ffi.NULL:
            raise MemoryError("trieMatchBufNew failed")
        self._buf = ffi.gc(buf, lib.trieMatchBufFree)
        self._ids = buf.ids
        self._cap = buf.cap
        self._closed = False

    # ---- helpers ----

    def _trie_key(self, pattern: Pattern):
        if pattern.user is None:
            return self._paths, pattern.path.encode("utf-8")
        return self._users, (pattern.user + pattern.path).encode("utf-8")

    def _live(self) -> None:
        if self._closed:
            raise ValueError("this SubscriptionIndex is closed")

    # ---- changes ----

    def add(self, sub_id: int, pattern: Pattern | str) -> bool:
        """Subscribe `sub_id` to `pattern`; False when that entry was already there."""
        self._live()
        _check_id(sub_id)
        pattern = _check_pattern(pattern)
        trie, key = self._trie_key(pattern)
        kind = _PREFIX if pattern.prefix else _EXACT
        if lib.trieInsert(trie, key, len(key), kind, sub_id):
            return True
        err = ffi.errno
        if err == 0:
            return False
        if err == 12:  # ENOMEM
            raise MemoryError("trieInsert: out of memory (the index is unchanged)")
        raise ValueError(f"trieInsert refused ({sub_id}, {pattern.text!r}): errno {err}")

    def remove(self, sub_id: int, pattern: Pattern | str) -> bool:
        """Unsubscribe; False when the entry was not there."""
        self._live()
        _check_id(sub_id)
        pattern = _check_pattern(pattern)
        trie, key = self._trie_key(pattern)
        kind = _PREFIX if pattern.prefix else _EXACT
        return bool(lib.trieRemove(trie, key, len(key), kind, sub_id))

    def add_many(self, entries: Iterable[tuple[int, Pattern | str]]) -> int:
        """Subscribe many (sub_id, pattern) pairs with one C call per trie; returns how many were new."""
        self._live()
        groups = {False: ([], bytearray(), array("I")), True: ([], bytearray(), array("I"))}
        for sub_id, pattern in entries:
            _check_id(sub_id)
            pattern = _check_pattern(pattern)
            if pattern.user is None:
                keys, kinds, ids = groups[True]
                keys.append(pattern.path.encode("utf-8"))
            else:
                keys, kinds, ids = groups[False]
                keys.append((pattern.user + pattern.path).encode("utf-8"))
            kinds.append(_PREFIX if pattern.prefix else _EXACT)
            ids.append(sub_id)
        added = 0
        for all_users, (keys, kinds, ids) in groups.items():
            if keys:
                added += self._insert_encoded(self._paths if all_users else self._users, keys, kinds, ids)
        return added

    def _insert_encoded(self, trie, keys: list[bytes], kinds: bytearray, ids: array) -> int:
        blob = b"".join(keys)
        offsets = array("Q", accumulate(map(len, keys), initial=0))
        out = ffi.new("size_t[2]")
        ok = lib.trieInsertMany(trie, blob, ffi.from_buffer("uint64_t[]", offsets), ffi.from_buffer(kinds),
                                ffi.from_buffer("uint32_t[]", ids), len(keys), out, out + 1)
        if not ok:
            err = ffi.errno
            if err == 12:
                raise MemoryError(f"trieInsertMany: out of memory after {out[1]} entries ({out[0]} new)")
            raise ValueError(f"trieInsertMany refused entry {out[1]}: errno {err}")
        return out[0]

    # ---- the hot path ----

    def match(self, user: str, path: str) -> list[int]:
        """Ids whose patterns match the event key user + path, each once (order unspecified)."""
        try:
            key_a = (user + path).encode("utf-8")
            key_b = path.encode("utf-8")
        except (TypeError, AttributeError):
            raise TypeError("match(user: str, path: str)") from None
        if self._closed:
            raise ValueError("this SubscriptionIndex is closed")
        n = lib.trieMatchPair(self._users, key_a, len(key_a), self._paths, key_b, len(key_b), self._buf)
        if n > self._cap:
            if not lib.trieMatchBufReserve(self._buf, n):
                raise MemoryError("trieMatchBufReserve failed")
            self._ids = self._buf.ids
            self._cap = self._buf.cap
            n = lib.trieMatchPair(self._users, key_a, len(key_a), self._paths, key_b, len(key_b), self._buf)
        return ffi.unpack(self._ids, n)

    # ---- size and life ----

    def __len__(self) -> int:
        self._live()
        return lib.trieSize(self._users) + lib.trieSize(self._paths)

    def node_count(self) -> int:
        self._live()
        return lib.trieNodeCount(self._users) + lib.trieNodeCount(self._paths)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ptr in (self._users, self._paths, self._buf):
            ffi.release(ptr)
        self._ids = ffi.NULL
        self._cap = 0

    def __enter__(self) -> "SubscriptionIndex":
        self._live()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
