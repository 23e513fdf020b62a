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
- bounded: the framed bytes held never exceed `max_bytes`, and an answer larger than `max_item` (default
  `max_bytes // ITEM_FRACTION`) is not kept at all;
- scan-resistant (a segmented LRU): a new answer enters the probation segment and moves to the protected one
  when it is served again; space is taken from probation first, least recently used first. An indexer reading
  every key once (more keys than fit) churns probation only, and the keys served twice stay. Protected holds at
  most `PROTECTED_SHARE` of the budget; past it, its least recently served entries go back to probation;
- admitted on a second miss: `store` keeps an answer only if its target is held already or missed before, since
  the doorkeeper (a set of target hashes, emptied whenever it reaches `DOORKEEPER_MAX`) was last emptied; a
  stale entry's target counts as seen. A scan over more keys than that stores nothing, so it holds and frees no
  answers for nothing (measured: that churn made each miss 3-15 µs slower than no cache).

      store ──▶ [ probation: LRU ... MRU ] ── hit ──▶ [ protected: LRU ... MRU ] ◀── hit
                     │ evicted first                        │ over its share: back to probation's MRU end
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

ITEM_FRACTION = 64  # the largest answer kept is this fraction of the budget (1 MiB of the default 64 MiB)
PROTECTED_SHARE = 0.8  # of the budget, at most this much is held by answers served more than once
DOORKEEPER_MAX = 65536  # target hashes remembered from first misses (about 4 MiB at most)
CacheTag = tuple[bytes, bytes, int]  # (user bytes, path bytes, index location of the record answered)
_Entry = tuple[bytes, bytes, int, bytes]  # (user bytes, path bytes, location, framed answer)


class ReadCache:
    __slots__ = ("max_bytes", "max_item", "max_protected", "_locate", "_probation", "_protected", "bytes",
                 "protected_bytes", "hits", "misses", "stale", "evicted", "_seen", "max_seen")

    def __init__(self, max_bytes: int, locate: Callable[[bytes, bytes], int | None], max_item: int | None = None):
        """`locate(user_b, path_b)`: the index location of the key's current record, or None."""
        if max_bytes <= 0:
            raise ValueError("a read cache needs a positive budget; use none at all to disable it")
        self.max_bytes = max_bytes
        self.max_item = min(max_bytes, max_bytes // ITEM_FRACTION if max_item is None else max_item)
        self.max_protected = int(max_bytes * PROTECTED_SHARE)
        self._locate = locate
        # OrderedDicts, not dicts: evicting a plain dict's first key again and again rescans the holes left at its
        # front (measured 12 µs per miss once full, against 0.9 µs)
        self._probation: OrderedDict[bytes, _Entry] = OrderedDict()
        self._protected: OrderedDict[bytes, _Entry] = OrderedDict()
        self._seen: set[int] = set()  # the doorkeeper: hashes of targets that missed once
        self.max_seen = DOORKEEPER_MAX
        self.bytes = 0  # framed bytes held, both segments
        self.protected_bytes = 0
        self.hits = 0
        self.misses = 0  # lookups with no entry or a stale one
        self.stale = 0  # of the misses: the key had changed since the entry was framed
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    @staticmethod
    def plain(headers: dict[bytes, bytes]) -> bool:
        """True if a GET with these headers is answered from its target alone (see the module invariants)."""
        return (b"authorization" not in headers and b"if-none-match" not in headers and b"origin" not in headers
                and b"min-seq" not in headers)  # a Min-Seq read may have to wait (engine/api/min_seq.py)

    def lookup(self, target: bytes) -> bytes | None:
        """The framed answer to a plain GET of `target`, if one is held and still current."""
        protected = self._protected
        entry = protected.get(target)
        if entry is None:
            entry = self._probation.get(target)
            if entry is None:
                self.misses += 1
                return None
            if not self._current(target, entry, self._probation):
                return None
            self._promote(target, entry)
        elif not self._current(target, entry, protected):
            self.protected_bytes -= len(entry[3])
            return None
        else:
            protected.move_to_end(target)
        self.hits += 1
        return entry[3]

    def _current(self, target: bytes, entry: _Entry, segment: OrderedDict) -> bool:
        if self._locate(entry[0], entry[1]) == entry[2]:
            return True
        del segment[target]
        self._note_seen(hash(target))  # it was worth keeping once: its new answer is admitted at once
        self.bytes -= len(entry[3])
        self.misses += 1
        self.stale += 1
        return False

    def _promote(self, target: bytes, entry: _Entry) -> None:
        """A probation entry served again moves to protected; protected's overflow goes back to probation."""
        del self._probation[target]
        protected = self._protected
        protected[target] = entry
        self.protected_bytes += len(entry[3])
        while self.protected_bytes > self.max_protected and len(protected) > 1:
            old_target, old = protected.popitem(last=False)
            self.protected_bytes -= len(old[3])
            self._probation[old_target] = old

    def store(self, target: bytes, tag: CacheTag, data: bytes) -> None:
        """Keep `data`, the framed answer to a plain GET of `target` made from the record `tag` names."""
        size = len(data)
        if size > self.max_item:
            return
        seen, key = self._seen, hash(target)
        if key in seen:
            seen.discard(key)
        elif target not in self._probation and target not in self._protected:
            self._note_seen(key)  # a first miss: remember it, keep nothing yet
            return
        self._drop(target)
        self.bytes += size
        probation, protected = self._probation, self._protected
        while self.bytes > self.max_bytes:
            if probation:
                self.bytes -= len(probation.popitem(last=False)[1][3])
            else:
                dropped = len(protected.popitem(last=False)[1][3])
                self.bytes -= dropped
                self.protected_bytes -= dropped
            self.evicted += 1
        probation[target] = (tag[0], tag[1], tag[2], data)

    def _note_seen(self, key: int) -> None:
        seen = self._seen
        if len(seen) >= self.max_seen:
            seen.clear()
        seen.add(key)

    def _drop(self, target: bytes) -> None:
        old = self._probation.pop(target, None)
        if old is None:
            old = self._protected.pop(target, None)
            if old is None:
                return
            self.protected_bytes -= len(old[3])
        self.bytes -= len(old[3])

    def clear(self) -> None:
        self._probation.clear()
        self._protected.clear()
        self._seen.clear()
        self.bytes = self.protected_bytes = 0
