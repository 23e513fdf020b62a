# engine/keyspace/index.py: the key index over the log: (user, path) -> location of the key's latest PUT.
#
# What it is for: get/put/delete/list of the key-value store, and the append-only collection view, on top of the
# one log. The index is a view of the log: it is rebuilt from it at open (one pass over every record, folded into
# the log's own recovery scan when opened with `Keyspace.open`), and retention asks it which records are live.
#
# Invariants:
# - per key only one int is kept, the packed location (segment id << 40 | offset) of its latest PUT; hash, size,
#   content type and time are read from that record's header in the map on demand (memory: about 150 bytes per
#   key, measured by `homestream bench log`);
# - paths are kept as UTF-8 bytes, per user: bytes order is the lexicographic order of SPEC 2 listings;
# - the index changes only after the log accepted the record (a ClientError from the log changes nothing);
# - a key is live iff the index points at it; retention keeps exactly the live records and reports their moves;
# - a user's live bytes (the sum of their current values' sizes, for quotas) are derived from the index on first
#   ask and then kept current by put/delete; retention moves records without changing sizes, so the figure is
#   exact across restarts, compaction and retention; `put_guard` sees it before a PUT is appended.

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Callable

from engine.errors import InvalidName
from engine.log.record import DEL, PUT, Record
from engine.log.store import Log, _fast_path_bytes
from engine.names import content_digest, encode_content_hash, is_item_name

from . import checkpoint as _checkpoint

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Entry:
    """What the index knows of a key, read from its record header: seq, ts, digest, size, content_type."""

    __slots__ = ("user", "path", "seq", "ts", "digest", "size", "content_type", "loc")

    def __init__(self, user: str, path: str, seq: int, ts: int, digest: bytes, size: int, content_type: str,
                 loc: int):
        self.user = user
        self.path = path
        self.seq = seq
        self.ts = ts
        self.digest = digest
        self.size = size
        self.content_type = content_type
        self.loc = loc

    @property
    def content_hash(self) -> str:
        """BLAKE3-256 of the value, standard base64 (SPEC 1)."""
        return encode_content_hash(self.digest)

    def __repr__(self) -> str:
        return f"Entry({self.user[:8]}…{self.path!r}, seq={self.seq}, size={self.size})"


class Keyspace:
    """The key index over a Log. `Keyspace(log)` scans an open log; `Keyspace.open(directory, **log_kwargs)`
    opens the log and builds the index during its recovery scan (one pass), and then owns the log."""

    def __init__(self, log: Log | None = None):
        self._users: dict[bytes, dict[bytes, int]] = {}
        self._sorted: dict[bytes, list[bytes]] = {}
        self._listeners: list[Callable] = []
        self._live_bytes: dict[bytes, int] = {}  # per user, once asked (live_bytes); kept current by put/delete
        self.put_guard: Callable[[str, int, int, int], None] | None = None  # (user, live, old, new): may raise
        self._owns_log = False
        self.checkpoint_used = False
        self.log = log
        if log is not None:
            log.scan(self._visit)
            self._drop_empty()

    @classmethod
    def open(cls, directory: str, *, use_checkpoint: bool = True, **log_kwargs) -> "Keyspace":
        """With `use_checkpoint`, a valid checkpoint.bin (engine/keyspace/checkpoint.py) gives the index up to
        its seq and only the records after it are scanned; an invalid one is ignored with a log line."""
        ks = cls()
        trusted = _checkpoint.load(directory, ks._users) if use_checkpoint else None
        ks.log = Log.open(directory, visitor=ks._visit, trusted=trusted, **log_kwargs)
        ks.checkpoint_used = trusted is not None and trusted.used
        ks._owns_log = True
        ks._drop_empty()
        return ks

    def _visit(self, kind: int, user_b: bytes, path_b: bytes, loc: int) -> None:
        d = self._users.get(user_b)
        if d is None:
            d = self._users[user_b] = {}
        if kind == PUT:
            d[path_b] = loc
        else:
            d.pop(path_b, None)

    def _drop_empty(self) -> None:
        for user_b in [u for u, d in self._users.items() if not d]:
            del self._users[user_b]

    # ---- reading ----

    @property
    def count(self) -> int:
        return sum(len(d) for d in self._users.values())

    def __len__(self) -> int:
        return self.count

    def _key(self, user: str, path: str) -> tuple[bytes, bytes]:
        user_b = self.log._users.get(user) or self.log._user_bytes(user)
        return user_b, _fast_path_bytes(path)

    def key_bytes(self, user: str, path: str) -> tuple[bytes, bytes]:
        """The key as the index holds it: (user bytes, UTF-8 path bytes), for `location`."""
        return self._key(user, path)

    def location(self, user_b: bytes, path_b: bytes) -> int | None:
        """The packed log location of the key's current record, None if the key has none. A location names
        one record for the life of the process, so an unchanged location means an unchanged value."""
        d = self._users.get(user_b)
        return d.get(path_b) if d is not None else None

    def _entry(self, user: str, path: str, loc: int) -> Entry:
        seq, ts, _kind, digest, ctype, size = self.log.header_at(loc)
        return Entry(user, path, seq, ts, digest, size, ctype, loc)

    def get(self, user: str, path: str) -> Entry | None:
        user_b, path_b = self._key(user, path)
        d = self._users.get(user_b)
        loc = d.get(path_b) if d is not None else None
        if loc is None:
            return None
        return self._entry(user, path, loc)

    def read_value(self, entry: Entry) -> bytes:
        """The value of `entry` (copied out of the map); re-reads the key if retention moved it since."""
        try:
            return bytes(self.log.value_at(entry.loc))
        except KeyError:
            fresh = self.get(entry.user, entry.path)
            if fresh is None:
                raise
            return bytes(self.log.value_at(fresh.loc))

    def value_view(self, entry: Entry) -> memoryview:
        """The value as a memoryview into the map (no copy); see Log on its lifetime."""
        return self.log.value_at(entry.loc)

    def _sorted_paths(self, user_b: bytes) -> list[bytes]:
        sp = self._sorted.get(user_b)
        if sp is None:
            sp = self._sorted[user_b] = sorted(self._users.get(user_b, ()))
        return sp

    @staticmethod
    def _dir_prefix(dir_path: str) -> bytes:
        if not dir_path.endswith("/"):
            dir_path += "/"
        return dir_path.encode("utf-8")

    def list(self, user: str, dir_path: str, cursor: str | None = None, limit: int = 100,
             reverse: bool = False) -> list[str]:
        """Paths of the direct and nested entries under `dir_path`, by path bytes (reversed with `reverse`),
        starting strictly after `cursor` (a path, or a pubky:// URI) in that order; at most `limit`."""
        user_b, _ = self._key(user, "/")
        if user_b not in self._users:
            return []
        prefix = self._dir_prefix(dir_path)
        sp = self._sorted_paths(user_b)
        lo = bisect_left(sp, prefix)
        hi = bisect_left(sp, prefix[:-1] + b"0", lo)  # '0' follows '/' in byte order
        if cursor:
            if cursor.startswith("pubky://"):
                cursor = cursor[len("pubky://") + 52:] if len(cursor) > 60 else "/"
            cur = cursor.encode("utf-8")
            if reverse:
                hi = max(lo, min(hi, bisect_left(sp, cur, lo, hi)))
            else:
                lo = min(hi, max(lo, bisect_right(sp, cur, lo, hi)))
        if limit <= 0:
            return []
        if reverse:
            chosen = sp[max(lo, hi - limit):hi]
            chosen.reverse()
        else:
            chosen = sp[lo:min(hi, lo + limit)]
        return [p.decode("utf-8") for p in chosen]

    def items(self, user: str, dir_path: str) -> list[tuple[str, Entry]]:
        """(path, entry) of the children of `dir_path` named by an item name, in append (seq) order."""
        user_b, _ = self._key(user, "/")
        if user_b not in self._users:
            return []
        d = self._users[user_b]
        prefix = self._dir_prefix(dir_path)
        sp = self._sorted_paths(user_b)
        lo = bisect_left(sp, prefix)
        hi = bisect_left(sp, prefix[:-1] + b"0", lo)
        n = len(prefix)
        out = []
        for p in sp[lo:hi]:
            name = p[n:]
            if len(name) == 52 and b"/" not in name and is_item_name(name.decode("ascii", "replace")):
                path = p.decode("utf-8")
                out.append((path, self._entry(user, path, d[p])))
        out.sort(key=lambda pe: pe[1].seq)
        return out

    def users(self) -> list[str]:
        return sorted(u.decode("ascii") for u in self._users)

    def has_user(self, user: str) -> bool:
        """True when the user holds at least one live key."""
        return self._key(user, "/")[0] in self._users

    def user_keys(self, user: str) -> int:
        d = self._users.get(self._key(user, "/")[0])
        return len(d) if d is not None else 0

    def paths(self, user: str) -> list[str]:
        """Every live path of the user, in byte order."""
        user_b, _ = self._key(user, "/")
        if user_b not in self._users:
            return []
        return [p.decode("utf-8") for p in self._sorted_paths(user_b)]

    def live_bytes(self, user: str) -> int:
        """The sum of the sizes of the user's current values (computed from the index once, then kept)."""
        user_b, _ = self._key(user, "/")
        return self._user_bytes(user_b)

    def _user_bytes(self, user_b: bytes) -> int:
        total = self._live_bytes.get(user_b)
        if total is None:
            d = self._users.get(user_b)
            if not d:
                return 0
            header_at = self.log.header_at
            total = self._live_bytes[user_b] = sum(header_at(loc)[5] for loc in d.values())
        return total

    # ---- writing ----

    def add_listener(self, fn: Callable[[int, str, str, Record], None]) -> None:
        """fn(kind, user, path, record) synchronously after each put/delete changed the index."""
        self._listeners.append(fn)

    def remove_listener(self, fn) -> None:
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def put(self, user: str, path: str, value, content_type: str = DEFAULT_CONTENT_TYPE,
            ts: int | None = None) -> tuple[Record, bool]:
        """Append a PUT and point the key at it: (record, created)."""
        if path.endswith("/"):
            raise InvalidName(f"invalid path {path!r}: a directory cannot hold a value")
        guard = self.put_guard
        if guard is not None:
            user_b, path_b = self._key(user, path)
            d = self._users.get(user_b)
            old_loc = d.get(path_b) if d is not None else None
            old_size = self.log.header_at(old_loc)[5] if old_loc is not None else 0
            guard(user, self._user_bytes(user_b), old_size, len(value))
        digest = content_digest(value)
        rec = self.log.append(PUT, user, path, value, digest, content_type or DEFAULT_CONTENT_TYPE, ts)
        created = self._point(user, path, rec)
        for fn in self._listeners:
            fn(PUT, user, path, rec)
        return rec, created

    def delete(self, user: str, path: str, ts: int | None = None) -> Record | None:
        """Append a DEL if the key exists and drop it from the index; None (and no record) if missing."""
        user_b, path_b = self._key(user, path)
        d = self._users.get(user_b)
        if d is None or path_b not in d:
            return None
        rec = self.log.append(DEL, user, path, ts=ts)
        self._unpoint(user_b, path_b)
        for fn in self._listeners:
            fn(DEL, user, path, rec)
        return rec

    def apply(self, rec: Record) -> None:
        """Point the index at a record appended elsewhere (a follower: engine/follower/), exactly as put and
        delete do after their own append, listeners included. Records must come in seq order, each once."""
        if rec.kind == PUT:
            self._point(rec.user, rec.path, rec)
        else:
            user_b, path_b = self._key(rec.user, rec.path)
            if not self._unpoint(user_b, path_b):
                return
        for fn in self._listeners:
            fn(rec.kind, rec.user, rec.path, rec)

    def rebuild(self, load: Callable[[Callable], None]) -> None:
        """Forget the index and refill it from load(visitor) (a follower re-reading the log after the writer's
        retention moved records). Listeners are not called: what they keep is derived from the same records."""
        self._users.clear()
        self._sorted.clear()
        self._live_bytes.clear()
        load(self._visit)
        self._drop_empty()

    def _point(self, user: str, path: str, rec: Record) -> bool:
        user_b, path_b = self._key(user, path)
        d = self._users.get(user_b)
        if d is None:
            d = self._users[user_b] = {}
        old_loc = d.get(path_b)
        created = old_loc is None
        live = self._live_bytes.get(user_b)
        if live is not None:
            old_size = self.log.header_at(old_loc)[5] if old_loc is not None else 0
            self._live_bytes[user_b] = live - old_size + len(rec.value)
        d[path_b] = rec.loc
        if created:
            sp = self._sorted.get(user_b)
            if sp is not None:
                insort(sp, path_b)
        return created

    def _unpoint(self, user_b: bytes, path_b: bytes) -> bool:
        d = self._users.get(user_b)
        if d is None or path_b not in d:
            return False
        live = self._live_bytes.get(user_b)
        if live is not None:
            self._live_bytes[user_b] = live - self.log.header_at(d[path_b])[5]
        del d[path_b]
        sp = self._sorted.get(user_b)
        if sp is not None:
            i = bisect_left(sp, path_b)
            if i < len(sp) and sp[i] == path_b:
                del sp[i]
        if not d:
            del self._users[user_b]
            self._sorted.pop(user_b, None)
            self._live_bytes.pop(user_b, None)
        return True

    # ---- retention ----

    def is_live(self, rec: Record) -> bool:
        if rec.kind != PUT:
            return False
        d = self._users.get(rec.user.encode("ascii"))
        return d is not None and d.get(rec.path.encode("utf-8")) == rec.loc

    def _moved(self, rec: Record, new_loc: int) -> None:
        d = self._users.get(rec.user.encode("ascii"))
        if d is not None:
            path_b = rec.path.encode("utf-8")
            if d.get(path_b) == rec.loc:
                d[path_b] = new_loc

    def live_raw(self, user_b: bytes, path_b: bytes, loc: int) -> bool:
        """Is the PUT at `loc` (of this user and path) the key's current record? Safe from a worker thread."""
        d = self._users.get(user_b)
        return d is not None and d.get(path_b) == loc

    def move_raw(self, user_b: bytes, path_b: bytes, old: int, new: int) -> None:
        """Point the key at `new` if it still points at `old` (a write made meanwhile wins). Owner thread only."""
        d = self._users.get(user_b)
        if d is not None and d.get(path_b) == old:
            d[path_b] = new

    def apply_retention(self, max_age_seconds: float = 0, max_bytes: int = 0, now: float | None = None) -> dict:
        """Log retention keeping the current value of every live key (see Log.apply_retention), inline."""
        return self.retention_pass(max_age_seconds, max_bytes, now=now).run_sync()

    def retention_pass(self, max_age_seconds: float = 0, max_bytes: int = 0, now: float | None = None):
        """The same as a RetentionPass whose `await run()` keeps the loop free (engine/log/compaction.py)."""
        return self.log.retention_pass(max_age_seconds, max_bytes, live_raw=self.live_raw, move_raw=self.move_raw,
                                       now=now)

    def checkpoint_writer(self) -> "_checkpoint.CheckpointWriter":
        """A writer of checkpoint.bin for this index: `await w.run()` on the loop, or w.run_sync()."""
        return _checkpoint.CheckpointWriter(self)

    def close(self) -> None:
        """Close the log if this keyspace opened it (Keyspace.open); idempotent."""
        if self._owns_log and self.log is not None:
            self.log.close()
