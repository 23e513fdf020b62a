"""The read cache: whole framed answers to plain GETs of public keys, so a hot key is answered with one dict
lookup instead of an index read, a value copy and a response encoding.

An entry is (target bytes) -> (user bytes, path bytes, index location, framed response bytes). It is filled by
the connection after it framed storage_get's answer, and only for an answer storage_get marked cacheable
(`Response.cache_tag`: a 200 for a public file). Invariants:
- exact, never stale: an entry is served only while the key index still points at the very record it was framed
  from. A location names one record for the process's life (segment ids are never reused), so any PUT, DELETE or
  retention move of the key makes the entry miss, and the next GET frames and stores the new answer;
- the same bytes as without the cache: only requests whose answer depends on nothing but the target are looked
  up (GET, no Authorization, If-None-Match or Origin header, a keep-alive cycle on the connection's fast path),
  which is also exactly what was true when the entry was filled;
- bounded: the framed bytes held never exceed `max_bytes`; the least recently served entries go first, and an
  answer larger than `max_bytes // ITEM_FRACTION` is not kept at all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

ITEM_FRACTION = 64  # the largest answer kept is this fraction of the budget (1 MiB of the default 64 MiB)
CacheTag = tuple[bytes, bytes, int]  # (user bytes, path bytes, index location of the record answered)


class ReadCache:
    __slots__ = ("max_bytes", "max_item", "_locate", "_entries", "bytes", "hits", "misses", "stale", "evicted")

    def __init__(self, max_bytes: int, locate: Callable[[bytes, bytes], int | None], max_item: int | None = None):
        """`locate(user_b, path_b)`: the index location of the key's current record, or None. `max_item`: the
        largest answer kept (default `max_bytes // ITEM_FRACTION`)."""
        if max_bytes <= 0:
            raise ValueError("a read cache needs a positive budget; use none at all to disable it")
        self.max_bytes = max_bytes
        self.max_item = min(max_bytes, max_bytes // ITEM_FRACTION if max_item is None else max_item)
        self._locate = locate
        # recency order, least recently served first. An OrderedDict, not a dict: evicting a plain dict's first
        # key again and again rescans the holes left at its front (measured 12 µs per miss once full)
        self._entries: OrderedDict[bytes, tuple[bytes, bytes, int, bytes]] = OrderedDict()
        self.bytes = 0  # framed bytes held
        self.hits = 0
        self.misses = 0  # lookups with no entry or a stale one
        self.stale = 0  # of the misses: the key had changed since the entry was framed
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def plain(headers: dict[bytes, bytes]) -> bool:
        """True if a GET with these headers is answered from its target alone (see the module invariants)."""
        return b"authorization" not in headers and b"if-none-match" not in headers and b"origin" not in headers

    def lookup(self, target: bytes) -> bytes | None:
        """The framed answer to a plain GET of `target`, if one is held and still current."""
        entries = self._entries
        entry = entries.get(target)
        if entry is None:
            self.misses += 1
            return None
        if self._locate(entry[0], entry[1]) != entry[2]:
            del entries[target]
            self.bytes -= len(entry[3])
            self.misses += 1
            self.stale += 1
            return None
        entries.move_to_end(target)
        self.hits += 1
        return entry[3]

    def store(self, target: bytes, tag: CacheTag, data: bytes) -> None:
        """Keep `data`, the framed answer to a plain GET of `target` made from the record `tag` names."""
        size = len(data)
        if size > self.max_item:
            return
        entries = self._entries
        old = entries.pop(target, None)
        if old is not None:
            self.bytes -= len(old[3])
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= len(entries.popitem(last=False)[1][3])
            self.evicted += 1
        entries[target] = (tag[0], tag[1], tag[2], data)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
