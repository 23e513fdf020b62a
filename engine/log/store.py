# engine/log/store.py: the Log, one append-only sequence of records in mmap'd segment files; it is both the
# key-value store (through engine/keyspace) and the event stream (through read_from and commit listeners).
#
# Invariants:
# - seq is last_seq + 1 for every append, starts at 1 and is never reused, even across restarts and retention
#   (meta.json keeps the next seq and the first retained seq; segment names and records override it);
# - a record is written whole into the map, CRC last, on the caller's thread; it becomes durable when a commit
#   (fdatasync on the committer thread, or flush()) covers it; `durable_seq` only grows;
# - commit listeners see every durable record exactly once, in seq order, on the loop thread (or the appending
#   thread when there is no loop); nothing is published before it is durable;
# - records from first_seq on are contiguous in seq within a segment (the stream history); between two history
#   segments seqs may jump only over a gap recorded in highwater.json (made on purpose by recovery or repair);
#   segments wholly before first_seq are compacted (only the latest records of live keys, original seqs, gaps
#   allowed), readable by location only;
# - every ".seg" file but the last is sealed; the last is the active one. At open (`_recover`), only a torn tail
#   of the active one (a bad spot with no valid record after it: a crash cut the last write) is truncated; a bad
#   record anywhere else, a seq range no segment holds, or a lost newest segment (highwater.json) refuses to
#   open (DamagedSegment, MissingSegments) and changes nothing: `homestream repair` is the way on;
# - highwater.json names the newest published segment and a seq bound past anything it can hold; the committer
#   updates it before it acknowledges a record of a new segment (engine/log/recovery.py has the analysis);
# - only segment.py touches files; this module works on the segments' maps through record.py framing.
#
# WARNING: `_scan` is the recovery scanner; it must change together with the record layout in record.py.
#
# Durability bound (fsync="batch"): an append is durable at most `commit_window` + one fdatasync after it is
# made; wait_durable resolves only after that fdatasync. "always" commits as soon as the committer wakes (no
# window); "never" resolves at once and leaves writeback to the OS: after a crash of the machine (not of the
# process) records may be lost and their seqs reused, so "never" is for benchmarks.

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import struct
import threading
import time
from bisect import bisect_right
from typing import Callable, Iterator

import blake3

from engine.errors import (
    CorruptLog, DamagedSegment, InvalidName, LogClosed, MissingSegments, StorageError, ValueTooLarge,
)
from engine.names import check_path, decode_user

from . import recovery as _recovery
from .compaction import RetentionPass
from . import segment as _seg
from . import trusted as _trusted
from .index import DEFAULT_INTERVAL, SparseIndex
from .record import (
    DEL, GAP, HEADER, HEADER_SIZE, MAGIC, MAGIC_V2, MAX_EXT_LEN, PREFIX, PUT, Record, U32, crc32c, decode_records,
    framing_ok,
)
from .segment import Segment

__all__ = ["Log", "LogStats", "decode_records", "LOC_SHIFT", "loc_offset", "loc_segment"]

logger = logging.getLogger("homestream.log")

MiB = 1 << 20
DEFAULT_SEGMENT_BYTES = 64 * MiB
DEFAULT_MAX_VALUE_BYTES = 8 * MiB + 64 * 1024  # the 8 MiB body limit plus headroom
LOC_SHIFT = 40
LOC_MASK = (1 << LOC_SHIFT) - 1
RAW_CHUNK_BYTES = 1 * MiB
_ZERO_DIGEST = bytes(32)
_REST = struct.Struct("<BBHHHQQI52s32s")  # the header after length and CRC
_LEN_CRC = struct.Struct("<II")
_time_ns = time.time_ns
_get_running_loop = asyncio._get_running_loop


def loc_segment(loc: int) -> int:
    return loc >> LOC_SHIFT


def loc_offset(loc: int) -> int:
    return loc & LOC_MASK


class LogStats:
    """Counters for /metrics."""

    __slots__ = ("truncated_bytes_total", "truncated_records_total", "commits_total", "fsync_seconds_total",
                 "fsync_last_seconds", "segments_compacted_total", "segments_removed_total",
                 "records_compacted_away_total")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def _fast_path_bytes(path) -> bytes:
    """UTF-8 bytes of a path SPEC 1 allows (file or directory); InvalidName otherwise."""
    if type(path) is not str:
        check_path(path)
    try:
        b = path.encode("utf-8")
    except UnicodeEncodeError:
        check_path(path)
        raise InvalidName("invalid path: not valid UTF-8") from None
    if (not b.startswith(b"/") or len(b) > 1024 or b"\0" in b or b"//" in b or b"/./" in b or b"/../" in b
            or b.endswith(b"/.") or b.endswith(b"/..")):
        check_path(path)  # raises with the precise reason
        if b != b"/":
            raise InvalidName(f"invalid path {path!r}")
    return b


class Log:
    """The segment log. Open with `Log.open(directory, ...)`; see the module comment for the invariants.

    Values of records returned by `read_from`, `read_at` and `decode_records` over `read_raw` slices are
    memoryviews into a segment's map: they stay valid (the map stays alive) as long as they are referenced,
    even after retention removes the segment; copy with bytes() to keep them past close().
    """

    @classmethod
    def open(cls, directory: str, **kwargs) -> "Log":
        return cls(directory, **kwargs)

    def __init__(self, directory: str, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: str = "batch",
                 commit_window: float = 0.002, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                 index_interval: int = DEFAULT_INTERVAL, visitor: Callable | None = None, trusted=None):
        if fsync not in ("always", "batch", "never"):
            raise ValueError(f"fsync must be always, batch or never, not {fsync!r}")
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self.directory = str(directory)
        self.segment_bytes = int(segment_bytes)
        self.fsync = fsync
        self.commit_window = float(commit_window) if fsync == "batch" else 0.0
        self._last_commit_at = 0.0  # monotonic time the last group commit ended (batch pacing)
        self.max_value_bytes = int(max_value_bytes)
        self.index_interval = int(index_interval)
        self.stats = LogStats()
        self._never = fsync == "never"
        self._closed = False
        self._failed: BaseException | None = None
        self._segments: list[Segment] = []
        self._by_id: dict[int, Segment] = {}
        self._to_seal: list[Segment] = []
        self._users: dict[str, bytes] = {}
        self._listeners: list[Callable] = []
        self._unnotified: list[Record] = []
        self._waiters: list = []
        self._waiter_ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver_scheduled = False
        self._undelivered = False
        self._commit_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._durable_cond = threading.Condition(threading.Lock())
        self._idle = False
        self._closing = False
        self._flush_requested = False

        _seg.ensure_directory(self.directory)
        self._lock_fd = _seg.lock_directory(self.directory)
        try:
            self._recover(visitor, trusted)
        except BaseException:
            for s in self._segments:
                s.close()
            _seg.unlock_directory(self._lock_fd)
            raise
        self._committer = threading.Thread(target=self._run_committer, name="homestream-log-committer",
                                           daemon=True)
        self._committer.start()

    # ------------------------------------------------------------------ recovery

    def _recover(self, visitor, trusted=None) -> None:
        """Open the segments, check that nothing is missing or damaged, cut a torn tail (see docs/STORAGE.md).

        Refuses (DamagedSegment, MissingSegments, CorruptLog) before changing any file when acknowledged
        records may be gone; `homestream repair` is the operator's way on (engine/log/repair.py)."""
        id_floor = Segment._ids.peek()  # ids from here on were never handed out before this open
        meta = _seg.read_meta(self.directory)
        self._hw = _seg.read_highwater(self.directory) or {}
        self._hw_key: tuple[int, int] | None = None  # (first seq, capacity) highwater.json covers
        self._hw_failed: tuple[int, int] | None = None
        found, leftovers = _seg.list_directory(self.directory)
        for path in leftovers:
            self._drop_leftover(path)
        segments: list[Segment] = []
        empty_files: list[str] = []
        for name_seq, path in found:
            seg = Segment.open(path, name_seq)
            seg.sealed = True
            if seg.capacity == 0:
                seg.close()
                empty_files.append(path)  # holds nothing; removed once the checks below pass
                continue
            first = self._first_record_seq(seg)
            if first is not None and first != name_seq:
                # a compacted segment whose final rename did not happen: name it by its first record
                seg.rename_to_first_seq(first)
            segments.append(seg)
        meta_first = int(meta.get("first_seq", 0) or 0)
        meta_next = int(meta.get("next_seq", 1) or 1)
        self._segments = segments
        for s in segments:
            s.index = SparseIndex(self.index_interval)
            self._by_id[s.id] = s
        # first_seq: the first segment at or after the recorded first_seq (boundaries are segment starts)
        if segments:
            active = segments[-1]
            active.sealed = False
            firsts = [s.first_seq for s in segments if s.first_seq >= meta_first]
            self._first_seq = firsts[0] if firsts else active.first_seq
        resume = self._use_trusted(trusted, segments, id_floor)
        prev_last = 0
        for s in segments[:-1]:
            history = s.first_seq >= self._first_seq
            self._scan(s, prev_last, history, sealed=True, visitor=visitor, resume=resume.get(s.id))
            prev_last = s.last_seq
        if segments:
            active = segments[-1]
            if active.first_seq <= prev_last:
                raise CorruptLog(active.path, 0, f"segment starts at seq {active.first_seq}, "
                                 f"not after {prev_last}")
            self._check_holes(segments)
            history = active.first_seq >= self._first_seq
            bad = self._scan(active, prev_last, history, sealed=False, visitor=visitor, resume=resume.get(active.id))
            self._check_newest(segments, meta_next)
            if bad is not None:
                self._cut_torn_tail(active, bad[0], bad[1], history, meta_next)
            self._next_seq = max(active.last_seq + 1, meta_next)
            if active.count == 0 and active.first_seq != self._next_seq:
                was_first = self._first_seq >= active.first_seq
                active.rename_to_first_seq(self._next_seq)
                active.last_seq = self._next_seq - 1
                if was_first:
                    self._first_seq = self._next_seq
            self._active = active
            if active.count and self._next_seq > active.last_seq + 1:
                # records the metadata knew of were lost (a damaged tail): their seqs are not reused, and the
                # gap falls between segments, so the new records start a new segment
                active.seal()
                self._active = Segment.create(self.directory, self._next_seq, self.segment_bytes)
                self._active.publish()
                self._active.index = SparseIndex(self.index_interval)
                self._segments.append(self._active)
                self._by_id[self._active.id] = self._active
        else:
            self._check_newest(segments, meta_next)
            self._next_seq = max(meta_next, 1)
            seg = Segment.create(self.directory, self._next_seq, self.segment_bytes)
            seg.publish()
            seg.index = SparseIndex(self.index_interval)
            self._segments = [seg]
            self._by_id[seg.id] = seg
            self._active = seg
            self._first_seq = self._next_seq
        self._first_seq = min(self._first_seq, self._active.first_seq)
        for path in empty_files:
            _seg.remove(path)
        self._note_highwater(self._active, made_gaps=True)
        last = self._next_seq - 1
        self._written = (last, self._active, self._active.used)
        self._synced_seq = last
        self.durable_seq = last

    def _use_trusted(self, trusted, segments: list[Segment], id_floor: int) -> dict:
        """A checkpoint's prefix (engine/log/trusted.py) that the scan may skip: {segment id: resume state}, if
        it still matches the files; else it is rejected (trusted.reject(reason)) and everything is scanned.
        The segments take the checkpoint's ids when they can (its locations then need no remapping)."""
        if trusted is None:
            return {}
        reason = _trusted.verify(segments, trusted.states, trusted.first_seq, self._first_seq if segments else -1)
        if reason is not None:
            trusted.reject(reason)
            return {}
        if _trusted.adopt_ids(segments, trusted.ids, id_floor):
            self._by_id = {s.id: s for s in segments}
        out = {s.id: _trusted.resume(s, st) for s, st in zip(segments, trusted.states)}
        trusted.accept([s.id for s in segments[:len(trusted.states)]])
        return out

    # ---- the checks that refuse to open (issue 21: never lose acknowledged records silently)

    def _history(self, segments: list[Segment]) -> list[tuple[int, int, str]]:
        return [(s.first_seq, s.last_seq, s.path) for s in segments if s.first_seq >= self._first_seq]

    def _check_holes(self, segments: list[Segment]) -> None:
        """A range of seqs between two history segments that no recorded gap explains: a segment is missing.
        (The active segment counts by its name: its records are scanned after this check.)"""
        missing = _recovery.missing_ranges(self._history(segments), self._hw.get("gaps"))
        if missing:
            first, last, before, after = missing[0]
            raise MissingSegments(self.directory, first, last,
                                  f"no segment holds them (between {before} and {after}); no record was dropped; "
                                  f"`homestream repair --data {self.directory}` accepts the loss")

    def _check_newest(self, segments: list[Segment], meta_next: int) -> None:
        """highwater.json names the newest segment ever published; none from its seq on: the newest is lost."""
        newest = self._hw.get("segment")
        if not isinstance(newest, int) or any(s.first_seq >= newest for s in segments):
            return
        bound = self._hw.get("bound") if isinstance(self._hw.get("bound"), int) else newest + 1
        if segments:
            first = segments[-1].last_seq + 1
            where = f"the newest segment left is {os.path.basename(segments[-1].path)}, last seq {first - 1}"
        else:
            first = newest
            where = "no segment file is left"
        last = meta_next - 1 if meta_next - 1 >= max(first, newest) else None
        raise MissingSegments(self.directory, first, last,
                              f"highwater.json records a segment from seq {newest} (seqs below {bound} may have "
                              f"been used), but {where}; no record was dropped; `homestream repair --data "
                              f"{self.directory}` accepts the loss and goes on from seq {max(bound, meta_next)}")

    def _damage(self, seg: Segment, off: int, reason: str, last_seq: int, contiguous: bool) -> DamagedSegment:
        """The error for a bad record that is not a torn tail, with what the bytes after it hold."""
        end = seg.last_nonzero(off)
        w = _recovery.walk(seg.mm, max(end, off + 1), start=off, last_seq=last_seq, contiguous=contiguous)
        span = w.spans[0] if w.spans else _recovery.Span(off, end, reason, last_seq, None, 1, False)
        return DamagedSegment(seg.path, off, reason, valid_after=w.count, lost=span.lost, bad_bytes=span.nbytes,
                              hint=f"the log was not opened and no record was dropped; `homestream repair --data "
                              f"{self.directory}` keeps every valid record and moves the file aside")

    def _cut_torn_tail(self, seg: Segment, off: int, bad: str, contiguous: bool, meta_next: int) -> None:
        """The active segment's data ends in a bad spot: a torn tail (nothing valid after it) is zeroed and
        reported; anything else is DamagedSegment."""
        last = seg.last_seq if seg.count else seg.first_seq - 1
        tail_end = seg.last_nonzero(off)
        w = _recovery.walk(seg.mm, tail_end, start=off, last_seq=last, contiguous=contiguous)
        if w.count:
            raise self._damage(seg, off, bad, last, contiguous)
        # exact when meta.json (written at close) knew the seqs; else counted by the tail's length fields
        dropped_records = max(w.spans[0].records if w.spans else 0, meta_next - 1 - last)
        seg.zero(off, tail_end)
        seg.sync()
        nbytes = tail_end - off
        self.stats.truncated_bytes_total += nbytes
        self.stats.truncated_records_total += dropped_records
        if meta_next - 1 > last:
            # meta.json is written at close, after the last commit: these records had been acknowledged. A bad
            # last record with nothing after it is still cut as a torn tail (the documented rule), but loudly
            logger.error("log recovery: truncated %s at offset %d (%s): dropped %d bytes, %d record(s) (seqs %d..%d),"
                         " acknowledged before the last clean close (meta.json); their seqs are not reused",
                         seg.path, off, bad, nbytes, dropped_records, last + 1, meta_next - 1)
            return
        logger.warning("log recovery: truncated %s at offset %d (%s): dropped %d bytes, %d record(s) (seqs from %d)",
                       seg.path, off, bad, nbytes, dropped_records, last + 1)

    def _note_highwater(self, seg: Segment, *, made_gaps: bool = False) -> None:
        """Keep highwater.json naming the newest published segment and a seq bound past its records, and the
        gaps between history segments that recovery made on purpose: the evidence `_check_newest` and
        `_check_holes` read, kept apart from meta.json so that losing one file never lets seqs be reused.
        Called at open and by the committer before it acknowledges a record of a new segment. A failure (a
        full disk) is a warning: the records stay durable, only that evidence is stale until the next try."""
        key = (seg.first_seq, seg.capacity)
        if key == self._hw_key and not made_gaps:
            return
        hw = dict(self._hw)
        hw["segment"] = seg.first_seq
        hw["bound"] = max(_recovery.seq_bound(seg.first_seq, seg.capacity), _int(hw.get("bound")))
        if made_gaps:
            made = _recovery.missing_ranges(self._history(self._segments), hw.get("gaps"))
            hw["gaps"] = _recovery.merge_gaps(hw.get("gaps"), [(a, b) for a, b, _x, _y in made], self._first_seq)
        if hw == self._hw:
            self._hw_key = key
            return
        try:
            _seg.write_highwater(self.directory, hw)
        except (StorageError, OSError) as exc:
            if self._hw_failed != key:  # retried at each commit, told once per segment
                self._hw_failed = key
                logger.warning("log: cannot write highwater.json (%s); retried at each commit", exc)
            return
        self._hw_failed = None
        self._hw = hw
        self._hw_key = key

    def _drop_leftover(self, path: str) -> None:
        """A '.pending' segment (never published: its records were never acknowledged) or a temp file."""
        nbytes = 0
        if path.endswith(_seg.PENDING_SUFFIX):
            try:
                s = Segment.open(path, 0)
                nbytes = s.last_nonzero(0) if s.capacity else 0
                s.close()
            except StorageError:
                pass
            if nbytes:
                logger.warning("log recovery: removed unpublished segment %s with %d bytes of unacknowledged "
                               "records", path, nbytes)
                self.stats.truncated_bytes_total += nbytes
        _seg.remove(path)

    @staticmethod
    def _first_record_seq(seg: Segment) -> int | None:
        if seg.capacity < HEADER_SIZE:
            return None
        length, _crc, magic, kind, _p, _c, _f, seq, _ts, _v = PREFIX.unpack_from(seg.mm, 0)
        if length == 0 or length > seg.capacity or not framing_ok(magic, kind, _p, _c, _f, _v, length):
            return None
        if crc32c(seg.mv[8:length]) != _crc:
            return None
        return seq

    def _scan(self, seg: Segment, prev_last: int, history: bool, *, sealed: bool,
              visitor, resume: tuple | None = None) -> tuple[int, str] | None:
        """Walk every record of `seg`, checking framing, CRC and seq order; rebuild its sparse index.

        WARNING: this is the recovery scanner; it must change together with record.py's layout.
        A bad record in a sealed segment is DamagedSegment (a CorruptLog); in the active one, (offset, reason)
        of the first bad spot is returned and nothing is changed (see `_cut_torn_tail`); None if all is well.
        """
        mm, mv = seg.mm, seg.mv
        cap = seg.capacity
        unpack = PREFIX.unpack_from
        index = seg.index
        interval = index.interval
        since = 0
        off = 0
        count = 0
        last_seq = prev_last
        last_ts = 0
        expect = seg.first_seq if history else None
        if resume is not None:  # a checkpoint vouched for the records before this offset (engine/log/trusted.py)
            off, count, last_seq, last_ts, since = resume
            if expect is not None and count:
                expect = last_seq + 1
        bad = None
        loc_base = seg.id << LOC_SHIFT
        while off + HEADER_SIZE <= cap:
            length, crc, magic, kind, plen, clen, _flags, seq, ts, vlen = unpack(mm, off)
            if length == 0:
                break
            if length < HEADER_SIZE or off + length > cap or ((
                    magic != MAGIC or kind not in (1, 2) or HEADER_SIZE + plen + clen + vlen != length)
                    and not framing_ok(magic, kind, plen, clen, _flags, vlen, length)):  # version 2: record.py
                bad = "bad framing"
                break
            if crc32c(mv[off + 8:off + length]) != crc:
                bad = "CRC mismatch"
                break
            if expect is not None:
                if seq != expect:
                    bad = f"seq {seq} where {expect} was expected"
                    break
                expect += 1
            elif seq <= last_seq:
                bad = f"seq {seq} not after {last_seq}"
                break
            if since == 0:
                index.seqs.append(seq)
                index.offsets.append(off)
            since += 1
            if since >= interval:
                since = 0
            if visitor is not None:
                visitor(kind, mm[off + 36:off + 88], mm[off + 120:off + 120 + plen], loc_base | off)
            last_seq = seq
            last_ts = ts
            count += 1
            off += length
        index._since = since
        if bad is None and off < cap and off + HEADER_SIZE > cap and length_nonzero(mm, off, cap):
            bad = "truncated header"
        seg.used = off
        seg.count = count
        seg.last_seq = last_seq if count else seg.first_seq - 1
        seg.last_ts = last_ts
        tail_end = seg.last_nonzero(off) if bad is None and off < cap else (cap if bad else off)
        if bad is None and tail_end > off:
            bad = "data after the end of the records"
        if bad is None:
            if sealed:
                seg.sealed = True
            return None
        if sealed:
            raise self._damage(seg, off, bad, expect - 1 if expect is not None else last_seq, history)
        return off, bad  # the active segment: `_cut_torn_tail` decides, after the other checks

    # ------------------------------------------------------------------ properties

    @property
    def first_seq(self) -> int:
        """First seq of the stream history (older seqs were removed or compacted by retention)."""
        return self._first_seq

    @property
    def last_seq(self) -> int:
        """Seq of the last record appended (durable or not); 0 when nothing was ever appended."""
        return self._next_seq - 1

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def size_bytes(self) -> int:
        return sum(s.used for s in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def closed(self) -> bool:
        return self._closed

    def segments(self) -> list[tuple[str, int, int, int, bool]]:
        """(path, first_seq, last_seq, bytes, compacted) of every live segment, oldest first."""
        return [(s.path, s.first_seq, s.last_seq, s.used, s.first_seq < self._first_seq) for s in self._segments]

    # ------------------------------------------------------------------ append

    def _user_bytes(self, user) -> bytes:
        b = self._users.get(user)
        if b is None:
            decode_user(user)
            b = user.encode("ascii")
            if len(self._users) > 1_000_000:
                self._users.clear()
            self._users[user] = b
        return b

    def append(self, kind: int, user: str, path: str, value=b"", digest: bytes = b"", content_type: str = "",
               ts: int | None = None, ext: bytes = b"") -> Record:
        """Append one record and return it (not yet durable: see wait_durable). Synchronous.

        A non-empty `ext` writes a version 2 record (record.py) with that extension block; only then is the kind
        GAP allowed, and a PUT keeps the digest it is given even with an empty value (a relay's copy).

        ValueTooLarge / InvalidName / LogFull leave the log unchanged and appendable.
        """
        if self._closed:
            raise LogClosed("the log is closed")
        if self._failed is not None:
            raise StorageError(f"the log failed: {self._failed}")
        user_b = self._users.get(user) or self._user_bytes(user)
        try:
            path_b = path.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            path_b = _fast_path_bytes(path)
        if (path_b[:1] != b"/" or len(path_b) > 1024 or b"\0" in path_b or b"//" in path_b
                or b"/." in path_b):
            path_b = _fast_path_bytes(path)
        if ext and (kind == GAP or (kind == PUT and digest)):
            vlen = len(value)
            if vlen > self.max_value_bytes:
                raise ValueTooLarge(f"value of {vlen} bytes is over the limit of {self.max_value_bytes} bytes")
            if len(ext) > MAX_EXT_LEN or (digest and len(digest) != 32):
                raise ValueError("extension or digest too long for a version 2 record")
            ctype_b = content_type.encode("utf-8")
        elif kind == PUT:
            vlen = len(value)
            if vlen > self.max_value_bytes:
                raise ValueTooLarge(f"value of {vlen} bytes is over the limit of {self.max_value_bytes} bytes")
            if not digest:
                digest = blake3.blake3(value).digest()
            elif len(digest) != 32:
                raise ValueError("digest must be 32 bytes")
            if content_type:
                ctype_b = content_type.encode("utf-8")
                if len(ctype_b) > 1024:
                    raise InvalidName("content type longer than 1024 bytes")
            else:
                ctype_b = b""
        elif kind == DEL:
            value, vlen, digest, content_type, ctype_b = b"", 0, b"", "", b""
        else:
            raise ValueError(f"unknown record kind {kind!r}")
        plen = len(path_b)
        clen = len(ctype_b)
        elen = len(ext)
        length = HEADER_SIZE + plen + clen + vlen + elen
        magic = MAGIC_V2 if elen else MAGIC
        seg = self._active
        off = seg.used
        if off + length > seg.capacity:
            seg = self._roll(length)
            off = seg.used
        seq = self._next_seq
        if ts is None:
            ts = _time_ns() // 1_000_000
        mm = seg.mm
        end = off + length
        if vlen <= 4096:
            # small record: frame it in one bytes object, CRC it, write it with one copy
            body = _REST.pack(magic, kind, plen, clen, elen, seq, ts, vlen, user_b, digest or _ZERO_DIGEST) \
                + path_b + ctype_b + value + ext
            _LEN_CRC.pack_into(mm, off, length, crc32c(body))
            mm[off + 8:end] = body
        else:
            HEADER.pack_into(mm, off, length, 0, magic, kind, plen, clen, elen, seq, ts, vlen, user_b,
                             digest or _ZERO_DIGEST)
            p = off + HEADER_SIZE
            mm[p:p + plen] = path_b
            p += plen
            if clen:
                mm[p:p + clen] = ctype_b
                p += clen
            mm[p:end - elen] = value
            if elen:
                mm[end - elen:end] = ext
            U32.pack_into(mm, off + 4, crc32c(seg.mv[off + 8:end]))
        seg.used = end
        seg.count += 1
        seg.last_seq = seq
        seg.last_ts = ts
        index = seg.index
        since = index._since
        if since == 0:
            index.seqs.append(seq)
            index.offsets.append(off)
        index._since = 0 if since + 1 >= index.interval else since + 1
        self._next_seq = seq + 1
        rec = Record(seq, ts, kind, user, path, digest, content_type, value, seg.loc_base | off, ext)
        self._written = (seq, seg, end)
        if self._listeners:
            self._unnotified.append(rec)
        if self._never:
            self.durable_seq = seq
            if self._listeners or self._waiters:
                self._after_commit()
        elif self._idle:
            self._kick()
        if self._undelivered and self._loop is None:
            self._deliver()
        return rec

    def _roll(self, length: int) -> Segment:
        """Start a new active segment for a record of `length` bytes (LogFull leaves the log as it was)."""
        old = self._active
        cap = max(self.segment_bytes, length)
        if old.used == 0:
            old.grow(cap)
            return old
        new = Segment.create(self.directory, self._next_seq, cap)
        new.index = SparseIndex(self.index_interval)
        self._segments.append(new)
        self._by_id[new.id] = new
        self._to_seal.append(old)
        self._active = new
        self._kick()
        return new

    # ------------------------------------------------------------------ commit

    def _kick(self) -> None:
        """Wake the committer. It cannot run while this thread holds the GIL, so without clearing `_idle` here
        every append of a burst would notify again (one Condition.notify each, ~2 % of a write's loop time);
        the committer sets `_idle` again before each look for work, so no append can be missed."""
        with self._cond:
            self._idle = False
            self._cond.notify()

    def _work_pending(self) -> bool:
        if self._to_seal:
            return True
        return self.fsync != "never" and self._written[0] > self._synced_seq

    def _run_committer(self) -> None:
        while True:
            with self._cond:
                while True:
                    self._idle = True  # before the look for work: an append after it sees this and kicks
                    if self._closing or self._work_pending():
                        break
                    self._cond.wait()
                self._idle = False
                if self._closing:
                    return
                urgent = self._flush_requested
            if self.commit_window > 0 and not urgent:
                # group commit: at most one commit per window. A write arriving after a quiet spell commits at
                # once; under load, commits follow each other `commit_window` apart and each covers all appends
                # made meanwhile. Either way a write waits at most one window plus one fdatasync.
                deadline = self._last_commit_at + self.commit_window
                with self._cond:
                    while not self._flush_requested and not self._closing:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
            try:
                self._commit()
                self._last_commit_at = time.monotonic()
            except BaseException as exc:  # an fsync error: the log can no longer promise durability
                self._failed = exc
                logger.error("log commit failed: %s", exc)
                self._after_commit()
                with self._durable_cond:
                    self._durable_cond.notify_all()
                return

    def _commit(self, *, sync: bool | None = None) -> None:
        """Make every record written so far durable (seal rolled segments, fdatasync the active one)."""
        with self._commit_lock:
            self._flush_requested = False
            target, tseg, _end = self._written  # first the target, then the segments that hold it
            sealing = list(self._to_seal)
            do_sync = (self.fsync != "never") if sync is None else sync
            t0 = time.perf_counter()
            for s in sealing:
                if s.pending:
                    s.publish()
                s.seal()
                self._to_seal.remove(s)
            if tseg.pending and not any(s.first_seq < tseg.first_seq for s in self._to_seal):
                # every segment before it is sealed. (A roll made while this commit ran may have queued tseg
                # itself for sealing: it is published all the same, since its records are acknowledged below.)
                tseg.publish()
            if not tseg.pending:
                self._note_highwater(tseg)  # before any record of a new segment is acknowledged
            if do_sync and target > self._synced_seq and tseg not in sealing:
                tseg.sync()
            dt = time.perf_counter() - t0
            if target > self._synced_seq:
                self._synced_seq = target
                self.stats.commits_total += 1
                self.stats.fsync_seconds_total += dt
                self.stats.fsync_last_seconds = dt
                if target > self.durable_seq:
                    self.durable_seq = target
        with self._durable_cond:
            self._durable_cond.notify_all()
        self._after_commit()

    def _after_commit(self) -> None:
        """Arrange for listeners and waiters to be told, on the loop thread (or the appending thread)."""
        loop = self._loop
        if loop is not None:
            if not self._deliver_scheduled:
                self._deliver_scheduled = True
                try:
                    if threading.current_thread() is self._committer:
                        loop.call_soon_threadsafe(self._deliver)
                    else:
                        loop.call_soon(self._deliver)
                except RuntimeError:  # the loop is closed
                    self._deliver_scheduled = False
                    self._loop = None
                    self._undelivered = True
        elif threading.current_thread() is not getattr(self, "_committer", None):
            self._deliver()
        else:
            self._undelivered = True

    def _deliver(self) -> None:
        self._deliver_scheduled = False
        self._undelivered = False
        durable = self.durable_seq
        pend = self._unnotified
        if pend and pend[0].seq <= durable:
            n = min(len(pend), durable - pend[0].seq + 1)
            batch = pend[:n]
            del pend[:n]
            for fn in list(self._listeners):
                try:
                    fn(batch)
                except Exception:
                    logger.exception("commit listener %r failed", fn)
        waiters = self._waiters
        while waiters and (waiters[0][0] <= durable or self._failed is not None or self._closed):
            seq, _i, fut = heapq.heappop(waiters)
            if not fut.done():
                if seq <= durable:
                    fut.set_result(None)
                else:
                    fut.set_exception(StorageError(f"the log failed or closed before seq {seq} was durable"))

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver commit listeners and waiters on `loop` from now on (the server calls this at start,
        so that a commit made on the committer thread reaches the loop without waiting for the next append)."""
        self._loop = loop

    def add_commit_listener(self, fn: Callable[[list[Record]], None]) -> None:
        """fn(records) after each commit with every newly durable record once, in seq order."""
        self._listeners.append(fn)

    def remove_commit_listener(self, fn) -> None:
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass
        if not self._listeners:
            self._unnotified.clear()

    async def wait_durable(self, seq: int) -> None:
        """Resolve once a commit covers `seq` (at once if it already has)."""
        if seq <= self.durable_seq:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._failed is not None or self._closed:
            raise StorageError(f"the log failed or closed before seq {seq} was durable")
        fut = loop.create_future()
        heapq.heappush(self._waiters, (seq, next(self._waiter_ids), fut))
        if self.fsync == "always" or self.durable_seq >= seq or self._undelivered:
            if self.durable_seq >= seq or self._undelivered:
                self._deliver()
            else:
                self._kick()
        await fut

    def wait_durable_sync(self, seq: int, timeout: float | None = None) -> bool:
        """Block until a commit covers `seq`; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._durable_cond:
            while self.durable_seq < seq:
                if self._failed is not None:
                    raise StorageError(f"the log failed: {self._failed}")
                if self._closed:
                    raise LogClosed("the log is closed")
                if self._idle:
                    self._kick()
                wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._durable_cond.wait(wait)
        if self._loop is None and self._undelivered:
            self._deliver()
        return True

    def flush(self) -> None:
        """Make everything appended so far durable now (synchronous), whatever the fsync mode."""
        if self._closed:
            return
        if self._failed is not None:
            raise StorageError(f"the log failed: {self._failed}")
        self._commit(sync=True)
        if self._loop is None or _get_running_loop() is self._loop:
            self._deliver()

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _offset_of(seg: Segment, seq: int, limit: int) -> int:
        """Offset of the first record with seq >= `seq` in `seg` (`limit` if none before it)."""
        _s, off = seg.index.floor(seq)
        mm = seg.mm if seg.mm is not None else seg.mv
        unpack = PREFIX.unpack_from
        while off < limit:
            length, _c, _m, _k, _p, _cl, _f, rseq, _t, _v = unpack(mm, off)
            if rseq >= seq or length == 0:
                return off
            off += length
        return limit

    def _history_segments(self, start: int, until: int) -> list[Segment]:
        first = self._first_seq
        segs = [s for s in self._segments if s.first_seq >= first]
        out = []
        for s in segs:
            if s.first_seq > until:
                break
            if s.count and s.last_seq >= start:
                out.append(s)
        return out

    def read_from(self, seq: int, until: int | None = None) -> Iterator[Record]:
        """Records with seq >= max(seq, first_seq), in order, up to `until` (default: durable_seq)."""
        if until is None:
            until = self.durable_seq
        start = max(seq, self._first_seq)
        for seg in self._history_segments(start, until):
            mv = seg.mv
            end = seg.used
            off = self._offset_of(seg, start, end)
            unpack = HEADER.unpack_from
            loc_base = seg.id << LOC_SHIFT
            raw = seg.mm if seg.mm is not None else mv  # slicing the mmap gives bytes without a view object
            users: dict[bytes, str] = {}  # user ids and content types repeat: decode each once per segment
            ctypes: dict[bytes, str] = {}
            while off < end:
                (length, _crc, magic, kind, plen, clen, flags, rseq, ts, vlen, user_b,
                 digest) = unpack(raw, off)
                if rseq > until:
                    return
                p = off + HEADER_SIZE
                path = raw[p:p + plen].decode("utf-8")
                p += plen
                ctype_b = raw[p:p + clen]
                ctype = ctypes.get(ctype_b)
                if ctype is None:
                    ctype = ctypes[ctype_b] = ctype_b.decode("utf-8")
                p += clen
                user = users.get(user_b)
                if user is None:
                    user = users[user_b] = user_b.decode("ascii")
                yield Record(rseq, ts, kind, user, path, b"" if kind == DEL else digest, ctype,
                             mv[p:p + vlen], loc_base | off,
                             mv[off + length - flags:off + length] if magic == MAGIC_V2 else b"")
                off += length

    def read_raw(self, seq: int, until: int | None = None,
                 chunk_bytes: int = RAW_CHUNK_BYTES) -> Iterator[tuple[int, int, memoryview]]:
        """(first seq, last seq, memoryview) slices of consecutive framed records for fast replay.

        Slices end at record boundaries (sparse-index entries), each about `chunk_bytes`; decode them with
        `decode_records`. Same range and lifetime rules as `read_from`.
        """
        if until is None:
            until = self.durable_seq
        start = max(seq, self._first_seq)
        for seg in self._history_segments(start, until):
            used = seg.used
            first = max(start, seg.first_seq)
            off = self._offset_of(seg, first, used) if first > seg.first_seq else 0
            last = min(until, seg.last_seq)
            end = used if last >= seg.last_seq else self._offset_of(seg, last + 1, used)
            mv = seg.mv
            seqs, offsets = seg.index.seqs, seg.index.offsets
            n = len(offsets)
            k = bisect_right(offsets, off)
            cur_off, cur_seq = off, first
            while cur_off < end:
                best = -1
                while k < n and offsets[k] < end:
                    if best >= 0 and offsets[k] - cur_off > chunk_bytes:
                        break
                    best = k
                    k += 1
                    if offsets[best] - cur_off >= chunk_bytes:
                        break
                if best >= 0:
                    cut_off, cut_seq = offsets[best], seqs[best]
                else:
                    cut_off, cut_seq = end, last + 1
                yield cur_seq, cut_seq - 1, mv[cur_off:cut_off]
                cur_off, cur_seq = cut_off, cut_seq

    def read_at(self, loc: int) -> Record:
        """The record at a location (as kept by the key index); value is a memoryview into the map."""
        seg = self._by_id.get(loc >> LOC_SHIFT)
        if seg is None:
            raise KeyError(f"no segment for location {loc}")
        mv = seg.mv
        off = loc & LOC_MASK
        (length, _crc, magic, kind, plen, clen, flags, seq, ts, vlen, user_b, digest) = HEADER.unpack_from(mv, off)
        p = off + HEADER_SIZE
        path = str(mv[p:p + plen], "utf-8")
        p += plen
        ctype = str(mv[p:p + clen], "utf-8")
        p += clen
        return Record(seq, ts, kind, user_b.decode("ascii"), path, b"" if kind == DEL else digest, ctype,
                      mv[p:p + vlen], loc, mv[off + length - flags:off + length] if magic == MAGIC_V2 else b"")

    def header_at(self, loc: int) -> tuple[int, int, int, bytes, str, int]:
        """(seq, ts, kind, digest, content_type, value_len) of the record at `loc`, without its value."""
        seg = self._by_id[loc >> LOC_SHIFT]
        mm = seg.mm if seg.mm is not None else seg.mv
        off = loc & LOC_MASK
        (_length, _crc, _magic, kind, plen, clen, _flags, seq, ts, vlen, _user, digest) = HEADER.unpack_from(mm, off)
        p = off + HEADER_SIZE + plen
        return seq, ts, kind, digest, str(seg.mv[p:p + clen], "utf-8"), vlen

    def value_at(self, loc: int) -> memoryview:
        seg = self._by_id[loc >> LOC_SHIFT]
        off = loc & LOC_MASK
        length, _crc, _magic, _kind, plen, clen, _f, _seq, _ts, vlen = PREFIX.unpack_from(seg.mv, off)
        p = off + HEADER_SIZE + plen + clen
        return seg.mv[p:p + vlen]

    def raw_segments(self) -> list[memoryview]:
        """The records of every live segment (compacted ones included) as raw slices, oldest first, for
        `decode_records`; same lifetime rules as `read_raw`."""
        return [s.mv[:s.used] for s in self._segments]

    def scan(self, visitor: Callable) -> None:
        """visitor(kind, user_bytes, path_bytes, loc) for every record of every segment, in seq order."""
        for seg in list(self._segments):
            mm = seg.mm if seg.mm is not None else seg.mv
            unpack = PREFIX.unpack_from
            off, end = 0, seg.used
            base = seg.id << LOC_SHIFT
            while off < end:
                length, _c, _m, kind, plen, _cl, _f, _seq, _ts, _v = unpack(mm, off)
                visitor(kind, bytes(mm[off + 36:off + 88]), bytes(mm[off + 120:off + 120 + plen]), base | off)
                off += length

    # ------------------------------------------------------------------ retention

    def apply_retention(self, max_age_seconds: float = 0, max_bytes: int = 0,
                        is_live: Callable[[Record], bool] | None = None,
                        on_move: Callable[[Record, int], None] | None = None,
                        now: float | None = None) -> dict:
        """Compact sealed segments older than `max_age_seconds` or beyond `max_bytes` (oldest first, never the
        active one): records with is_live(record) True are copied (same bytes, same seq) into a rewritten
        segment, others dropped; a segment with nothing live is deleted. first_seq moves past them.
        on_move(record, new_loc) reports each record that moved. Returns counts. Runs wholly on the calling
        thread; `retention_pass` gives a pass whose heavy work runs off the loop (engine/log/compaction.py).
        """
        if self._closed:
            raise LogClosed("the log is closed")
        return self.retention_pass(max_age_seconds, max_bytes, is_live=is_live, on_move=on_move,
                                   now=now).run_sync()

    def retention_pass(self, max_age_seconds: float = 0, max_bytes: int = 0, **kwargs):
        """A RetentionPass over this log (engine/log/compaction.py): `await p.run()` on the loop, or run_sync()."""
        return RetentionPass(self, max_age_seconds, max_bytes, **kwargs)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush, stop the committer, unmap, release the directory. Idempotent."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self._commit(sync=True)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._committer.join()
            try:
                if self._loop is None or _get_running_loop() is self._loop:
                    self._deliver()
            except Exception:
                logger.exception("delivering the last commit at close failed")
            self._closed = True
            try:
                if self._failed is None:
                    _seg.write_meta(self.directory, {"first_seq": self._first_seq, "next_seq": self._next_seq})
            except (StorageError, OSError) as exc:
                # every record is durable in its segment already (the commit above); meta.json only speeds up
                # and guards the next open, and keeps its previous content (written atomically)
                logger.warning("log close: meta.json not updated (%s); the records are durable", exc)
            finally:
                for s in self._segments:
                    s.close()
                _seg.unlock_directory(self._lock_fd)
                with self._durable_cond:
                    self._durable_cond.notify_all()
                self._deliver_waiters_closed()

    def _deliver_waiters_closed(self) -> None:
        for seq, _i, fut in self._waiters:
            if not fut.done():
                try:
                    loop = fut.get_loop()
                    if loop.is_closed():
                        continue
                    if seq <= self.durable_seq:
                        loop.call_soon_threadsafe(_set_result, fut)
                    else:
                        loop.call_soon_threadsafe(_set_exc, fut, LogClosed("the log is closed"))
                except RuntimeError:
                    pass
        self._waiters.clear()

    def __enter__(self) -> "Log":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Log({self.directory!r}, first_seq={self._first_seq}, last_seq={self.last_seq})"


def _set_result(fut) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_exc(fut, exc) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _int(value) -> int:
    return value if isinstance(value, int) else 0


def length_nonzero(mm, off: int, end: int) -> bool:
    return any(mm[off:end])
