"""The subscription index of SPEC 3.1: which subscriber ids want an event, over two C prefix indexes.

SubscriptionIndex uses csrc/subidx.c (a hash table of '/'-terminated prefixes: every probe of a key prefetched at
once, see csrc/subidx.h); TrieSubscriptionIndex, the same API over the radix tries of csrc/trie.c, is kept for
comparison (engine/bench/match.py --compare) and as a fallback.

- the user index holds patterns naming one user, keyed by (user + path).encode('utf-8');
- the path index holds all-user patterns (`*/...` and `*`), keyed by path.encode('utf-8');
  `*` is (user=None, path='/', prefix=True).
Exact patterns are EXACT entries, `.../*` patterns PREFIX entries on the path up to and including the last '/'.

Invariants:
- match(user, path) returns every id with a matching pattern, each id once (deduplicated across both indexes),
  in one C call, with no allocation that grows with the index; its cost is O(key length + matches).
- matcher(table) returns a function f(user, path) == [table[i] for i in match(user, path)], done in one
  CPython-API call (csrc/pyfast.inc: no cffi call, no int object per id); it reads the list `table` at each
  call, so the caller keeps appending to that same list (the hub passes its `slots`). match() is f with no table.
- the index holds integer ids only (0 .. 2^32-2), never Python objects; the caller maps ids to subscribers (or
  passes the table) and applies visibility (private paths only for their owner) itself.
- patterns come from engine.names.parse_pattern, which rejects whatever SPEC 3.1 forbids before C sees it.
- adding an (id, pattern) twice is a no-op (add returns False); removing an absent one returns False.
- not thread-safe: one event loop owns an index (match reuses one output buffer).
"""

from __future__ import annotations

import os
from array import array
from itertools import accumulate
from typing import Callable, Iterable

from engine.names import Pattern, parse_pattern

from . import hashing as _hashing  # noqa: F401  (its import installs the CPython-API functions of pyfast.inc)
from ._lib import ffi, lib

from engine import _native  # noqa: E402  (index_matcher exists once hsFastInstall has run)

__all__ = ["SubscriptionIndex", "TrieSubscriptionIndex", "MAX_ID"]

MAX_ID = 0xFFFFFFFE
_EXACT = lib.SUBIDX_EXACT
_PREFIX = lib.SUBIDX_PREFIX
assert (_EXACT, _PREFIX) == (lib.TRIE_EXACT, lib.TRIE_PREFIX)


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


class _CIndex:
    """The C functions of one index structure (the same contract: see csrc/trie.h and csrc/subidx.h)."""

    def __init__(self, prefix: str, seeded: bool, kind: int):
        self.name = prefix
        self.seeded = seeded
        self.kind = kind  # index_matcher's kind: 0 subidx, 1 trie
        def fn(verb: str):
            return getattr(lib, prefix + verb)

        self.New, self.Free, self.Insert, self.InsertMany = fn("New"), fn("Free"), fn("Insert"), fn("InsertMany")
        self.Remove, self.Size, self.MatchPair = fn("Remove"), fn("Size"), fn("MatchPair")
        self.MatchBufNew, self.MatchBufReserve, self.MatchBufFree = (fn("MatchBufNew"), fn("MatchBufReserve"),
                                                                     fn("MatchBufFree"))
        self.Count = fn("KeyCount" if seeded else "NodeCount")

    def new(self):
        ptr = self.New(int.from_bytes(os.urandom(8), "little")) if self.seeded else self.New()
        if ptr == ffi.NULL:
            raise MemoryError(f"{self.name}New failed")
        return ffi.gc(ptr, self.Free)


_SUBIDX = _CIndex("subidx", seeded=True, kind=0)
_TRIE = _CIndex("trie", seeded=False, kind=1)
_index_matcher = _native.index_matcher


def _addr(ptr) -> int:
    return int(ffi.cast("uintptr_t", ptr))


class SubscriptionIndex:
    """Two C indexes plus a reusable match buffer; `with SubscriptionIndex() as idx: idx.add(7, pattern)`."""

    __slots__ = ("_users", "_paths", "_buf", "_ids", "_cap", "_closed", "_match_pair", "_matchers", "_match_ids",
                 "__weakref__")
    _c = _SUBIDX

    def __init__(self, match_capacity: int = 256):
        c = self._c
        self._users = c.new()
        self._paths = c.new()
        buf = c.MatchBufNew(max(16, int(match_capacity)))
        if buf == ffi.NULL:
            raise MemoryError(f"{c.name}MatchBufNew failed")
        self._buf = ffi.gc(buf, c.MatchBufFree)
        self._match_pair = c.MatchPair
        self._ids = buf.ids
        self._cap = buf.cap
        self._closed = False
        self._matchers = []
        self._match_ids = self._new_matcher(None)

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
        if self._c.Insert(trie, key, len(key), kind, sub_id):
            return True
        err = ffi.errno
        if err == 0:
            return False
        if err == 12:  # ENOMEM
            raise MemoryError("insert: out of memory (the index is unchanged)")
        raise ValueError(f"insert refused ({sub_id}, {pattern.text!r}): errno {err}")

    def remove(self, sub_id: int, pattern: Pattern | str) -> bool:
        """Unsubscribe; False when the entry was not there."""
        self._live()
        _check_id(sub_id)
        pattern = _check_pattern(pattern)
        trie, key = self._trie_key(pattern)
        kind = _PREFIX if pattern.prefix else _EXACT
        return bool(self._c.Remove(trie, key, len(key), kind, sub_id))

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
        ok = self._c.InsertMany(trie, blob, ffi.from_buffer("uint64_t[]", offsets), ffi.from_buffer(kinds),
                                ffi.from_buffer("uint32_t[]", ids), len(keys), out, out + 1)
        if not ok:
            err = ffi.errno
            if err == 12:
                raise MemoryError(f"insert_many: out of memory after {out[1]} entries ({out[0]} new)")
            raise ValueError(f"insert_many refused entry {out[1]}: errno {err}")
        return out[0]

    # ---- the hot path ----

    def _new_matcher(self, table):
        m = _index_matcher(self._c.kind, _addr(self._users), _addr(self._paths), _addr(self._buf), table,
                           (self._users, self._paths, self._buf))
        self._matchers.append(m)
        return m.match

    def matcher(self, table: list) -> Callable[[str, str], list]:
        """f(user, path) -> [table[i] for i in self.match(user, path)], in one C call; `table` is a list the
        caller keeps (and may append to: it is read at each call). An id past its end raises IndexError.
        f raises ValueError once the index is closed."""
        self._live()
        if type(table) is not list:
            raise TypeError(f"matcher(table) takes a list, not {type(table).__name__}")
        return self._new_matcher(table)

    def match(self, user: str, path: str) -> list[int]:
        """Ids whose patterns match the event key user + path, each once (order unspecified)."""
        return self._match_ids(user, path)

    def _match_cffi(self, user: str, path: str) -> list[int]:
        """match() through cffi (the path before matcher existed): kept as a differential reference for the
        tests and as the "before" figure of `homestream bench match`."""
        try:
            key_a = (user + path).encode("utf-8")
            key_b = path.encode("utf-8")
        except (TypeError, AttributeError):
            raise TypeError("match(user: str, path: str)") from None
        if self._closed:
            raise ValueError("this SubscriptionIndex is closed")
        n = self._match_pair(self._users, key_a, len(key_a), self._paths, key_b, len(key_b), self._buf)
        if n > self._cap:
            if not self._c.MatchBufReserve(self._buf, n):
                raise MemoryError("MatchBufReserve failed")
            self._ids = self._buf.ids
            self._cap = self._buf.cap
            n = self._c.MatchPair(self._users, key_a, len(key_a), self._paths, key_b, len(key_b), self._buf)
        return ffi.unpack(self._ids, n)

    # ---- size and life ----

    def __len__(self) -> int:
        self._live()
        return self._c.Size(self._users) + self._c.Size(self._paths)

    def node_count(self) -> int:
        """Trie nodes (TrieSubscriptionIndex) or distinct keys (SubscriptionIndex) of both indexes."""
        self._live()
        return self._c.Count(self._users) + self._c.Count(self._paths)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for m in self._matchers:
            m.close()
        self._matchers.clear()
        for ptr in (self._users, self._paths, self._buf):
            ffi.release(ptr)
        self._ids = ffi.NULL
        self._cap = 0

    def __enter__(self) -> "SubscriptionIndex":
        self._live()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TrieSubscriptionIndex(SubscriptionIndex):
    """SubscriptionIndex over the radix tries of csrc/trie.c (the previous structure), for comparison."""

    __slots__ = ()
    _c = _TRIE
