"""Per-collection sync state on the server: count, set hash, key index and an incrementally kept sketch.

A collection is `<user><dir>/`; its items are the children of dir whose last segment is an item name and whose
stored bytes hash to that name (a PUT that lies about the name is not an item for /sync, /get or /bloom).
State is built lazily on first use from `keyspace.items()` and then kept current by the keyspace listener
(called synchronously after each put/delete), so it always equals the keyspace's current index. What must stay
true:
- count, set hash, `index` and the sketch all describe the same set of items at every return to the event loop;
- slots are in append (seq) order; a removed slot keeps its place with seq 0 (a tombstone) until compaction, so
  "items in append order" is a walk over the slots;
- a 64-bit key shared by two items (a collision) keeps both in the sketch; the second is not indexed (listed in
  `collided`): decoding then cannot finish and the client falls back to the exact list, never to a wrong set;
- `last_seq` is the newest seq applied: responses built from this state wait for the log to be durable there.
"""

from __future__ import annotations

from array import array
from typing import Any, Callable, Iterator

from ..log.record import DEL, PUT
from ..names import is_item_name, item_name_from_digest, zbase32_decode
from ..native.bloom import BloomFilter
from ..native.sketch import Sketch
from .keys import HASH_MOD, KeyDeriver, collection_key, set_hash_bytes

INITIAL_SYMBOLS = 2048
MIN_INITIAL_SYMBOLS = 64
DIGEST = 32


class Collection:
    __slots__ = ("user", "dir", "ckey", "salt", "derive", "digests", "seqs", "keys", "index", "collided", "count",
                 "total", "dead", "last_seq", "sketch", "version", "reader", "_bloom", "compactions", "__weakref__")

    def __init__(self, user: str, dir_path: str, reader: Callable[["Collection", bytes, Any], bytes] | None = None):
        self.user = user
        self.dir = dir_path
        self.ckey = collection_key(user, dir_path)
        self.derive = KeyDeriver(self.ckey)
        self.salt = self.derive.salt
        self.digests = bytearray()
        self.seqs = array("Q")
        self.keys = array("Q")
        self.index: dict[int, int] = {}
        self.collided: dict[bytes, int] = {}
        self.count = 0
        self.total = 0  # sum of digests mod 2^256
        self.dead = 0
        self.last_seq = 0
        self.sketch: Sketch | None = None
        self.version = 0
        self.reader = reader
        self._bloom: tuple[Any, bytes] | None = None
        self.compactions = 0  # bumped when slots move (readers that walk slots across loop turns re-find their place)

    # ---- the set ----

    @property
    def set_hash(self) -> bytes:
        return set_hash_bytes(self.total)

    def add(self, digest: bytes, seq: int) -> bool:
        """Add an item (a no-op when present); True if the set changed."""
        key = self.derive(digest)
        slot = self.index.get(key)
        if slot is not None:
            if self.digests[slot * DIGEST:(slot + 1) * DIGEST] == digest:
                return False
            if digest in self.collided:
                return False
        slot = len(self.seqs)
        self.digests += digest
        self.seqs.append(seq or 1)
        self.keys.append(key)
        if key in self.index:
            self.collided[bytes(digest)] = slot
        else:
            self.index[key] = slot
        self.count += 1
        self.total = (self.total + int.from_bytes(digest, "little")) % HASH_MOD
        if seq > self.last_seq:
            self.last_seq = seq
        if self.sketch is not None:
            self.sketch.add(key)
        self.version += 1
        return True

    def remove(self, digest: bytes, seq: int = 0) -> bool:
        key = self.derive(digest)
        slot = self.collided.pop(bytes(digest), None)
        if slot is None:
            slot = self.index.get(key)
            if slot is None or self.digests[slot * DIGEST:(slot + 1) * DIGEST] != digest:
                return False
            del self.index[key]
            for d, s in list(self.collided.items()):  # promote a collided twin to the index
                if self.keys[s] == key:
                    del self.collided[d]
                    self.index[key] = s
                    break
        self.seqs[slot] = 0
        self.dead += 1
        self.count -= 1
        self.total = (self.total - int.from_bytes(digest, "little")) % HASH_MOD
        if seq > self.last_seq:
            self.last_seq = seq
        if self.sketch is not None:
            self.sketch.remove(key)
        self.version += 1
        if self.dead > 1024 and self.dead > self.count:
            self._compact()
        return True

    def _compact(self) -> None:
        digests, seqs, keys = bytearray(), array("Q"), array("Q")
        index: dict[int, int] = {}
        collided: dict[bytes, int] = {}
        for slot, seq in enumerate(self.seqs):
            if not seq:
                continue
            d = bytes(self.digests[slot * DIGEST:(slot + 1) * DIGEST])
            key = self.keys[slot]
            new = len(seqs)
            digests += d
            seqs.append(seq)
            keys.append(key)
            if key in index:
                collided[d] = new
            else:
                index[key] = new
        self.digests, self.seqs, self.keys, self.index, self.collided = digests, seqs, keys, index, collided
        self.dead = 0
        self.compactions += 1

    def slot_of_digest(self, digest: bytes) -> int | None:
        slot = self.index.get(self.derive(digest))
        if slot is not None and self.digests[slot * DIGEST:(slot + 1) * DIGEST] == digest:
            return slot
        return self.collided.get(bytes(digest))

    def digest_at(self, slot: int) -> bytes:
        return bytes(self.digests[slot * DIGEST:(slot + 1) * DIGEST])

    def live_slots(self, max_seq: int | None = None) -> Iterator[int]:
        """Slots of the items, in append order (only those with seq <= max_seq when given)."""
        seqs = self.seqs
        if max_seq is None:
            if not self.dead:
                return iter(range(len(seqs)))
            return (s for s in range(len(seqs)) if seqs[s])
        return (s for s in range(len(seqs)) if 0 < seqs[s] <= max_seq)

    def live_digests(self) -> bytes:
        """Every item's digest, concatenated, in append order."""
        if not self.dead:
            return bytes(self.digests)
        d = self.digests
        return b"".join(d[s * DIGEST:(s + 1) * DIGEST] for s in self.live_slots())

    def live_keys(self) -> array:
        if not self.dead:
            return array("Q", self.keys)
        keys = self.keys
        return array("Q", (keys[s] for s in self.live_slots()))

    def read(self, digest: bytes, slot: int | None = None) -> bytes:
        """The stored bytes of an item (its slot, when the caller knows it, saves a lookup)."""
        return self.reader(self, digest, slot)

    def path_of(self, digest: bytes) -> str:
        return self.dir + item_name_from_digest(digest)

    # ---- sketch ----

    def ensure_symbols(self, size: int, cap: int | None = None) -> Sketch:
        """The server's sketch with at least `size` symbols (built on first use, then grown by doubling), never
        grown past `cap` (what its own items need: engine/sync/server.py symbol_cap) by the doubling."""
        if cap is not None:
            size = min(size, cap)
        if self.sketch is None:
            n = INITIAL_SYMBOLS if self.count >= INITIAL_SYMBOLS // 2 else max(MIN_INITIAL_SYMBOLS, 2 * self.count)
            if cap is not None:
                n = min(n, cap)
            self.sketch = Sketch.from_keys(self.live_keys(), max(n, size), self.salt)
        elif size > len(self.sketch):
            grown = max(size, 2 * len(self.sketch))
            self.sketch.extend(grown if cap is None else max(size, min(grown, cap)), self.live_keys())
        return self.sketch

    # ---- bloom ----

    def bloom_bytes(self, nbytes: int, k: int, cache: bool = True) -> bytes:
        """The items' filter of `nbytes` bytes. Only a filter the caller sized for the collection's own count is
        kept (`cache`): one sized for a client's larger claim is made for that answer and dropped."""
        cached = self._bloom
        if cached is not None and cached[0] == (self.version, nbytes, k):
            return cached[1]
        f = BloomFilter(nbytes, k)
        try:
            if self.count:
                f.add_many(self.live_digests())
            data = f.to_bytes()
        finally:
            f.close()
        if cache:
            self._bloom = ((self.version, nbytes, k), data)
        return data

    def close(self) -> None:
        if self.sketch is not None:
            self.sketch.close()
            self.sketch = None


def keyspace_reader(keyspace: Any) -> Callable[[Collection, bytes, Any], bytes]:
    def read(coll: Collection, digest: bytes, slot: int | None = None) -> bytes:
        entry = keyspace.get(coll.user, coll.path_of(digest))
        if entry is None:
            raise KeyError(digest)
        return keyspace.read_value(entry)
    return read


class Registry:
    """The collections of one server, built on first use and kept current from keyspace events."""

    def __init__(self, keyspace: Any):
        self.keyspace = keyspace
        self.collections: dict[tuple[str, str], Collection] = {}
        self._reader = keyspace_reader(keyspace)
        keyspace.add_listener(self.on_change)

    def get(self, user: str, dir_path: str) -> Collection | None:
        """The collection at `<user><dir>/`, or None when the directory holds nothing at all (404)."""
        coll = self.collections.get((user, dir_path))
        if coll is not None:
            return coll
        items = self.keyspace.items(user, dir_path)
        if not items and not self.keyspace.list(user, dir_path, limit=1):
            return None
        coll = Collection(user, dir_path, self._reader)
        start = len(dir_path)
        for path, entry in items:
            name = path[start:]
            if entry.digest == zbase32_decode(name, 32):
                coll.add(entry.digest, entry.seq)
        self.collections[(user, dir_path)] = coll
        return coll

    def on_change(self, kind: int, user: str, path: str, record: Any) -> None:
        head, _, name = path.rpartition("/")
        coll = self.collections.get((user, head + "/"))
        if coll is None or not is_item_name(name):
            return
        name_digest = zbase32_decode(name, 32)
        if kind == PUT and record.digest == name_digest:
            coll.add(name_digest, record.seq)
        elif kind in (PUT, DEL):
            coll.remove(name_digest, record.seq)

    def close(self) -> None:
        self.keyspace.remove_listener(self.on_change)
        for coll in self.collections.values():
            coll.close()
        self.collections.clear()
