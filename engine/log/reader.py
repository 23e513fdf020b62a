# engine/log/reader.py: a read-only view of a log directory that another process writes: the segments mapped
# read-only, followed record by record up to a seq the caller knows to be durable.
#
# What it is for: a worker process (engine/workers/) serves reads and streams from the writer's segments without
# copying them. It offers the read half of the Log interface (read_from, read_raw, read_at, header_at, value_at,
# scan, first_seq, last_seq, durable_seq, add_commit_listener, bind_loop), with the very code of Log's read
# methods (borrowed below, one copy of each idea), so keyspace/, pubsub/ and api/ cannot tell the two apart.
#
# Invariants:
# - nothing is read past the target the caller passes to `advance` (the writer's durable seq): a record being
#   written, or a torn tail that the writer's recovery will truncate, is never seen;
# - `durable_seq` is the last seq handed out by `advance`/`load` (the follower sets it once it has applied them);
# - a byte of a segment is read only below the file's size as fstat reports it after the target was learnt
#   (a sealed segment is truncated to its data before any later seq is durable, so this never touches a page
#   past the end of a file: no SIGBUS);
# - maps are dropped, never closed, when the reader lets go of a segment: record values handed out are
#   memoryviews into them and stay valid while referenced (the same rule as Log);
# - segment ids come from Segment's counter, so a location names one record for the process's life, across
#   reloads too (the read cache relies on it);
# - listeners get every batch once, in seq order, even when a listener makes the follower apply a newer batch
#   before it returns (see notify).
#
# WARNING: `_read_tail` decodes the record layout of record.py; it must change together with it and with
# Log._scan.

from __future__ import annotations

import collections
import logging
import mmap
import os
from typing import Callable

from engine.errors import StorageError

from . import segment as _seg
from .index import DEFAULT_INTERVAL, SparseIndex
from .record import DEL, HEADER, HEADER_SIZE, MAGIC, PREFIX, Record, crc32c
from .segment import Segment
from .store import LOC_SHIFT, Log, LogStats

logger = logging.getLogger("homestream.log.reader")


class ReadSegment:
    """One segment file mapped read-only; the attributes Log's read methods use (see Segment)."""

    def __init__(self, path: str, first_seq: int, interval: int):
        self.id = Segment._ids.take()  # one counter for both kinds: ids are never reused in a process
        self.loc_base = self.id << LOC_SHIFT
        self.path = path
        self.first_seq = first_seq
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.capacity = 0
        self.mm: mmap.mmap | None = None
        self.mv = memoryview(b"")
        self.used = 0
        self.count = 0
        self.last_seq = first_seq - 1
        self.last_ts = 0
        self.index = SparseIndex(interval)
        self.remap()

    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    def remap(self) -> int:
        """Map the whole file as it is now (it may have grown); returns its size."""
        size = self.file_size()
        if size > self.capacity:
            self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
            self.mv = memoryview(self.mm)
            self.capacity = size
        return size

    def drop(self) -> None:
        """Let go: close the descriptor; the map lives on while memoryviews into it do."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.mm = None
        self.fd = -1

    def __repr__(self) -> str:
        return f"ReadSegment({os.path.basename(self.path)}, used={self.used}, count={self.count})"


class LogReader:
    """The segments of `directory`, read-only, followed up to a durable seq. See the module comment."""

    # the read half of Log, shared by reference: these use only _segments, _by_id, _first_seq, durable_seq and
    # the segments' attributes, which this class keeps with the same meaning
    read_from = Log.read_from
    read_raw = Log.read_raw
    read_at = Log.read_at
    header_at = Log.header_at
    value_at = Log.value_at
    _offset_of = staticmethod(Log._offset_of)
    _history_segments = Log._history_segments
    _user_bytes = Log._user_bytes
    first_seq = Log.first_seq
    size_bytes = Log.size_bytes
    segment_count = Log.segment_count

    def __init__(self, directory: str, *, index_interval: int = DEFAULT_INTERVAL):
        self.directory = str(directory)
        self.index_interval = index_interval
        self.stats = LogStats()
        self.durable_seq = 0
        self._first_seq = 1
        self._segments: list[ReadSegment] = []
        self._by_id: dict[int, ReadSegment] = {}
        self._users: dict[str, bytes] = {}
        self._listeners: list[Callable] = []
        self._batches: collections.deque[list[Record]] = collections.deque()
        self._notifying = False
        self._closed = False
        self.reloads = 0

    # ---- the Log interface a server needs ----

    @property
    def last_seq(self) -> int:
        return self.durable_seq

    @property
    def next_seq(self) -> int:
        return self.durable_seq + 1

    @property
    def closed(self) -> bool:
        return self._closed

    def add_commit_listener(self, fn: Callable[[list[Record]], None]) -> None:
        """fn(records) for every batch the follower applies (what Log calls after a commit)."""
        self._listeners.append(fn)

    def remove_commit_listener(self, fn) -> None:
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def notify(self, records: list[Record]) -> None:
        """Call the listeners with `records`, batches always in seq order. A listener may cause a newer batch to
        be applied before it returns (a released write lets its connection read the next request, whose
        catch-up applies more): that batch is queued and handed out after this one has reached every listener,
        so the hub never publishes a newer record before an older one."""
        self._batches.append(records)
        if self._notifying:
            return
        self._notifying = True
        try:
            while self._batches:
                batch = self._batches.popleft()
                for fn in list(self._listeners):
                    try:
                        fn(batch)
                    except Exception:
                        logger.exception("commit listener %r failed", fn)
        finally:
            self._notifying = False

    def bind_loop(self, loop) -> None:
        """Listeners are called by the follower, on its loop: nothing to bind."""

    def flush(self) -> None:
        """Nothing to flush: the writer owns durability."""

    def segments(self) -> list[tuple[str, int, int, int, bool]]:
        return [(s.path, s.first_seq, s.last_seq, s.used, s.first_seq < self._first_seq) for s in self._segments]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in self._segments:
            s.drop()
        self._segments = []
        self._by_id = {}

    # ---- following ----

    def load(self, target: int, first_seq: int, visitor: Callable | None = None) -> None:
        """(Re)map every segment of the directory and read each up to `target`, calling
        visitor(kind, user_bytes, path_bytes, loc) per record, in seq order (the Keyspace's scan visitor).
        Used at start and after the writer's retention rewrote or removed segments."""
        old = self._segments
        self._segments = []
        self._by_id = {}
        found = self._listing()
        self._first_seq = first_seq
        for name_seq, path in found:
            try:
                seg = ReadSegment(path, name_seq, self.index_interval)
            except FileNotFoundError:
                continue  # removed by retention between the listing and the open
            self._add(seg)
            if name_seq > target:
                continue
            self._read_tail(seg, target, visitor, None)
        for s in old:
            s.drop()
        if self._segments:
            self.durable_seq = max(self.durable_seq, min(target, max(s.last_seq for s in self._segments)))
        self.reloads += 1

    def _add(self, seg: ReadSegment) -> None:
        self._segments.append(seg)
        self._by_id[seg.id] = seg

    def advance(self, target: int) -> list[Record]:
        """The records after `durable_seq` up to `target`, in order, read from the tail and the segments that
        followed it. Fewer (maybe none) when the writer has not made them visible yet; the caller sets
        `durable_seq` once it has applied them."""
        out: list[Record] = []
        if self._closed or target <= self.durable_seq:
            return out
        if not self._segments:
            self._open_after(0)
            if not self._segments:
                return out
        seg = self._segments[-1]
        last = self.durable_seq
        while last < target:
            got = self._read_tail(seg, target, None, out)
            if got:
                last = out[-1].seq
                continue
            nxt = self._open_after(seg.first_seq)
            if nxt is None:
                break  # not visible yet (a writer restart in progress): the next catch-up retries
            seg = nxt
        return out

    def _listing(self) -> list[tuple[int, str]]:
        """(first seq from the name, path) of every segment file, oldest first. With fsync=never a record is
        durable at append, before the committer renames a rolled segment's '.pending' file: such a file is
        listed too (the descriptor follows the rename)."""
        found, leftovers = _seg.list_directory(self.directory)
        for path in leftovers:
            if path.endswith(_seg.PENDING_SUFFIX):
                name_seq = _seg.parse_segment_name(os.path.basename(path)[:-len(".pending")])
                if name_seq is not None and (name_seq, path[:-len(".pending")]) not in found:
                    found.append((name_seq, path))
        found.sort()
        return found

    def _open_after(self, first_seq: int) -> ReadSegment | None:
        """Map the oldest segment named after `first_seq` that is not mapped yet."""
        found = self._listing()
        known = {s.path for s in self._segments} | {s.path + ".pending" for s in self._segments}
        for name_seq, path in found:
            if name_seq > first_seq and path not in known and path[:-len(".pending")] not in known:
                try:
                    seg = ReadSegment(path, name_seq, self.index_interval)
                except FileNotFoundError:
                    continue
                self._add(seg)
                return seg
        return None

    def _read_tail(self, seg: ReadSegment, target: int, visitor, out: list | None) -> int:
        """Read the records of `seg` from its `used` offset while their seq <= target; returns how many."""
        size = seg.file_size() if seg.fd >= 0 else 0
        if size > seg.capacity:
            size = min(size, seg.remap())
        size = min(size, seg.capacity)
        mm = seg.mm
        if mm is None:
            return 0
        mv = seg.mv
        off = seg.used
        n = 0
        unpack = HEADER.unpack_from
        index = seg.index
        base = seg.loc_base
        users: dict[bytes, str] = {}
        while off + HEADER_SIZE <= size:
            length, crc, magic, kind, plen, clen, _f, seq, ts, vlen = PREFIX.unpack_from(mm, off)
            if length == 0 or seq > target:
                break
            if (magic != MAGIC or kind not in (1, 2) or length < HEADER_SIZE or off + length > size
                    or HEADER_SIZE + plen + clen + vlen != length or crc32c(mv[off + 8:off + length]) != crc):
                raise StorageError(f"{seg.path}: bad record at offset {off} below the durable seq {target}")
            index.note(seq, off)
            if visitor is not None:
                visitor(kind, mm[off + 36:off + 88], mm[off + 120:off + 120 + plen], base | off)
            if out is not None:
                (_l, _c, _m, _k, _p, _cl, _fl, _s, _t, _v, user_b, digest) = unpack(mm, off)
                p = off + HEADER_SIZE
                path = mm[p:p + plen].decode("utf-8")
                p += plen
                ctype = mm[p:p + clen].decode("utf-8")
                p += clen
                user = users.get(user_b)
                if user is None:
                    user = users[user_b] = user_b.decode("ascii")
                out.append(Record(seq, ts, kind, user, path, b"" if kind == DEL else digest, ctype,
                                  mv[p:p + vlen], base | off))
            seg.last_seq = seq
            seg.last_ts = ts
            seg.count += 1
            off += length
            n += 1
        seg.used = off
        return n

    def __repr__(self) -> str:
        return f"LogReader({self.directory!r}, first_seq={self._first_seq}, durable_seq={self.durable_seq})"
