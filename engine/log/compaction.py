# engine/log/compaction.py: a retention pass (drop old history, copy live records forward) whose heavy work runs
# off the owner's thread, so that a pass over a large log never stalls the event loop (issue 18 item 7).
#
# A pass is a generator of steps (`steps`). A step is either
# - `Offload(fn)`: slow work on a worker thread: walking a segment's records to find the live ones, writing and
#   fsyncing the compacted file, renaming files, writing meta.json. It reads sealed segments (which never
#   change) and the key index (dict reads are atomic under the GIL), and builds new objects no one else sees;
# - `None`: a short piece of work done on the owner's thread between two yields: installing a compacted segment
#   in the Log's segment list and location map, moving at most `MOVE_SLICE` key locations, retiring a segment.
# `run_sync` runs every step inline on the caller's thread (Log.apply_retention); `run` (async) runs Offload
# steps in a thread and yields to the loop between owner steps (the server).
#
# Invariants (those of store.py, kept while the loop serves requests in between the steps):
# - the Log's in-memory state (`_segments`, `_by_id`, `_first_seq`) and the key index are changed only on the
#   owner's thread, in steps of bounded size;
# - a location names one record for the life of the process: a compacted segment is a new Segment (a new id)
#   installed before any key points at it; the old one stays in `_by_id`, mapped, until every move is applied,
#   then is retired (its map lives while views into it do), so a location read meanwhile still names its record;
# - a move is applied only if the key still points at the old location (a write made during the pass wins);
#   a record found live that a write made dead before its move is copied anyway and dropped by the next pass,
#   which compacts the already compacted segments first, before any tombstone is dropped, so no older value
#   outlives a dropped tombstone;
# - meta.json names the new first_seq before a history segment's file is touched (crash safety, see STORAGE.md);
# - only sealed segments are candidates (a segment waiting for the committer's seal is never read here).

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Callable, Iterator

from engine.errors import LogClosed

from . import segment as _seg
from .index import SparseIndex
from .record import PREFIX, PUT, decode_records
from .segment import Segment

MOVE_SLICE = 256  # key moves applied per owner step (well under 1 ms of dict work)
PASS_SWITCH_INTERVAL = 0.0005  # GIL switch interval while a pass's worker runs: the loop waits at most this


class Offload:
    """A step to run on a worker thread; its result is sent back into the pass."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable):
        self.fn = fn


class RetentionPass:
    """One retention pass over `log`. Liveness and moves come either raw from the key index
    (`live_raw(user_b, path_b, loc)`, `move_raw(user_b, path_b, old_loc, new_loc)`) or as Record callbacks
    (`is_live(record)`, `on_move(record, new_loc)`, the Log.apply_retention API)."""

    def __init__(self, log, max_age_seconds: float = 0, max_bytes: int = 0, *, is_live=None, on_move=None,
                 live_raw=None, move_raw=None, now: float | None = None):
        self.log = log
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.is_live = is_live
        self.on_move = on_move
        self.live_raw = live_raw
        self.move_raw = move_raw
        if live_raw is None and is_live is None:
            self.is_live = lambda rec: False
        self.now = now
        self.result = {"compacted": 0, "removed": 0}
        self.longest_step_cpu = 0.0  # the most CPU time of the loop thread in one piece
        self.longest_step_cpu_at = 0  # the line of compaction.py that piece ended at (a diagnostic)
        self.longest_step = 0.0  # seconds: the longest piece of the pass run on the owner's thread (run())
        self.stop = False  # set to end the pass at the next segment boundary (shutdown)

    # ---- drivers

    def run_sync(self) -> dict:
        """Every step inline on the caller's thread (commits what was appended first, so the newest sealed
        segments are candidates too)."""
        self.log.flush()
        gen = self.steps()
        value = None
        while True:
            try:
                step = gen.send(value)
            except StopIteration:
                return self.result
            value = step.fn() if step is not None else None

    async def run(self) -> dict:
        """Offload steps on a worker thread; between owner steps the loop serves everything else."""
        gen = self.steps()
        value = None
        perf = time.perf_counter
        # the worker thread walks records in Python: with the default 5 ms switch interval the loop could wait
        # that long for the GIL at each wake-up; a shorter interval while the pass runs bounds that wait
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, PASS_SWITCH_INTERVAL))
        try:
            return await self._drive(gen, perf)
        finally:
            sys.setswitchinterval(switch)

    async def _drive(self, gen, perf) -> dict:
        value = None
        while True:
            t0 = perf()
            c0 = time.thread_time()
            try:
                step = gen.send(value)
            except StopIteration:
                return self.result
            finally:
                dt = perf() - t0
                cpu = time.thread_time() - c0
                if cpu > self.longest_step_cpu:
                    self.longest_step_cpu = cpu
                    inner = gen.gi_yieldfrom if gen.gi_yieldfrom is not None else gen
                    frame = inner.gi_frame if hasattr(inner, "gi_frame") else None
                    self.longest_step_cpu_at = frame.f_lineno if frame is not None else -1
                self.longest_step = max(self.longest_step, dt)
            if step is None:
                value = None
                await asyncio.sleep(0)
            else:
                value = await asyncio.to_thread(step.fn)

    # ---- the pass

    def steps(self) -> Iterator[Offload | None]:
        log = self.log
        result = self.result
        if not self.max_age_seconds and not self.max_bytes:
            result["first_seq"] = log._first_seq
            return
        now_ms = (time.time() if self.now is None else self.now) * 1000
        cutoff = now_ms - self.max_age_seconds * 1000 if self.max_age_seconds else None

        def wanted(seg: Segment) -> bool:
            if cutoff is not None and seg.last_ts < cutoff:
                return True
            return bool(self.max_bytes) and log.size_bytes > self.max_bytes

        candidates = _candidates(log)  # (no Segment may stay referenced from this frame: see _compact)
        if not candidates or not wanted(candidates[0]):
            result["first_seq"] = log._first_seq
            return
        # older compacted segments first, so that no dead record outlives a newer tombstone that is dropped
        queue = [s for s in log._segments[:-1] if s.first_seq < log._first_seq]
        while queue and not self.stop:
            yield from self._compact(queue.pop(0), already_compacted=True)
        queue = candidates
        del candidates
        while queue and not self.stop and wanted(queue[0]):
            new_first = log._segments[log._segments.index(queue[0]) + 1].first_seq
            meta = {"first_seq": new_first, "next_seq": log._next_seq}
            yield Offload(lambda meta=meta: _seg.write_meta(log.directory, meta))
            log._first_seq = max(log._first_seq, new_first)
            yield from self._compact(queue.pop(0), already_compacted=False)
        meta = {"first_seq": log._first_seq, "next_seq": log._next_seq}
        yield Offload(lambda: _seg.write_meta(log.directory, meta))
        result["first_seq"] = log._first_seq

    def _compact(self, seg: Segment, *, already_compacted: bool) -> Iterator[Offload | None]:
        """Compact one segment. Everything big it makes or drops (the old segment's map, the lists of live
        records and moves) is kept in `work` and let go on the worker thread at the end (`work.clear`): an
        munmap of 64 MiB or freeing 100,000 tuples takes milliseconds the loop must not spend."""
        log = self.log
        work = {"seg": seg}
        del seg
        work["runs"], work["live"] = yield Offload(lambda: self._find_live(work["seg"]))
        old = work["seg"]
        if already_compacted and len(work["live"]) == old.count:
            del old
            yield Offload(work.clear)
            return
        if not work["live"]:
            yield Offload(lambda: _remove_file(work["seg"]))
            log._segments.remove(old)
            log._by_id.pop(old.id, None)
            old.retire()
            self.result["removed"] += 1
            log.stats.segments_removed_total += 1
            log.stats.records_compacted_away_total += old.count
            del old
            yield Offload(work.clear)
            return
        new, work["moves"] = yield Offload(lambda: self._write(work["seg"], work["runs"], work["live"]))
        # install: the new segment is readable by its locations before any key points at it
        log._segments[log._segments.index(old)] = new
        log._by_id[new.id] = new
        del new
        moves = work["moves"]
        for i in range(0, len(moves[2]), MOVE_SLICE):
            yield None
            self._apply_moves(moves, i, i + MOVE_SLICE)
        del moves
        yield None
        log._by_id.pop(old.id, None)
        old.retire()
        self.result["compacted"] += 1
        log.stats.segments_compacted_total += 1
        log.stats.records_compacted_away_total += old.count - len(work["live"])
        del old
        yield Offload(work.clear)

    # ---- worker-thread parts (they read sealed maps and the index; they change nothing shared)

    def _find_live(self, seg: Segment) -> tuple[list[int], "_Live"]:
        """(flat [start, end, ...] byte runs of live records, the live records) of a sealed segment.

        Kept in flat lists of ints and bytes, which the cyclic GC does not track: a million tracked tuples made
        here would make a collection (which holds the GIL) take milliseconds on whichever thread triggers it."""
        mm = seg.mm if seg.mm is not None else seg.mv
        end = seg.used
        base = seg.loc_base
        runs: list[int] = []
        live = _Live()
        ka, kb, offs, lens, seqs = live.a, live.b, live.offs, live.lens, live.seqs
        if self.live_raw is not None:
            live_raw = self.live_raw
            unpack = PREFIX.unpack_from
            off = 0
            while off < end:
                length, _c, _m, kind, plen, _cl, _f, seq, ts, _v = unpack(mm, off)
                if kind == PUT:
                    user_b = mm[off + 36:off + 88]
                    path_b = mm[off + 120:off + 120 + plen]
                    if live_raw(user_b, path_b, base | off):
                        ka.append(user_b)
                        kb.append(path_b)
                        offs.append(off)
                        lens.append(length)
                        seqs.append(seq)
                        live.last_ts = ts
                        if runs and runs[-1] == off:
                            runs[-1] = off + length
                        else:
                            runs += (off, off + length)
                off += length
        else:
            is_live = self.is_live
            off = 0
            for rec in decode_records(seg.mv[:end]):
                length = PREFIX.unpack_from(mm, off)[0]
                rec.loc = base | off
                if is_live(rec):
                    ka.append(rec)
                    kb.append(None)
                    offs.append(off)
                    lens.append(length)
                    seqs.append(rec.seq)
                    live.last_ts = rec.ts
                    if runs and runs[-1] == off:
                        runs[-1] = off + length
                    else:
                        runs += (off, off + length)
                off += length
        return runs, live

    def _write(self, seg: Segment, runs: list[int], live: "_Live") -> tuple[Segment, tuple]:
        """Write the live records (same bytes) as the segment's replacement; (new Segment, moves)."""
        log = self.log
        mv = seg.mv
        chunks = (mv[runs[i]:runs[i + 1]] for i in range(0, len(runs), 2))
        _seg.write_file_atomic(seg.path, chunks, tmp_suffix=".compact")
        new = Segment.open(seg.path, seg.first_seq)
        new.sealed = True
        new.rename_to_first_seq(live.seqs[0])
        new.index = SparseIndex(log.index_interval)
        new_base = new.loc_base
        old_base = seg.loc_base
        noff = 0
        olds: list[int] = []
        news: list[int] = []
        note = new.index.note
        for off, length, seq in zip(live.offs, live.lens, live.seqs):
            note(seq, noff)
            olds.append(old_base | off)
            news.append(new_base | noff)
            noff += length
        new.used = noff
        new.count = len(live)
        new.last_seq = live.seqs[-1]
        new.last_ts = live.last_ts
        return new, (live.a, live.b, olds, news)

    # ---- owner-thread part

    def _apply_moves(self, moves: tuple, i: int, j: int) -> None:
        a, b, olds, news = moves
        if self.live_raw is not None:
            move = self.move_raw
            for k in range(i, min(j, len(olds))):
                move(a[k], b[k], olds[k], news[k])
        elif self.on_move is not None:
            on_move = self.on_move
            for k in range(i, min(j, len(olds))):
                on_move(a[k], news[k])


class _Live:
    """The live records of a segment, as parallel lists: key (user bytes and path bytes, or the Record),
    offset, length, seq; and the time of the last one."""

    __slots__ = ("a", "b", "offs", "lens", "seqs", "last_ts")

    def __init__(self) -> None:
        self.a: list = []
        self.b: list = []
        self.offs: list[int] = []
        self.lens: list[int] = []
        self.seqs: list[int] = []
        self.last_ts = 0

    def __len__(self) -> int:
        return len(self.offs)


def _candidates(log) -> list[Segment]:
    """Sealed history segments, oldest first, up to the first one still waiting for the committer's seal."""
    out = []
    for seg in log._segments[:-1]:
        if not seg.sealed or seg.pending:
            break  # waiting for the committer: it and every later one stay for the next pass
        if seg.first_seq >= log._first_seq:
            out.append(seg)
    return out


def _remove_file(seg: Segment) -> None:
    _seg.remove(seg.path)
    _seg.fsync_dir(os.path.dirname(seg.path))
