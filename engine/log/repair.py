# engine/log/repair.py: `homestream repair` — the operator's way on when the log refuses to open because records
# may be lost (a damaged segment, a missing one). `analyse` reads and reports; `execute` changes the directory.
#
# What a repair does (docs/STORAGE.md "Damage and repair"):
# - every damaged segment file (a bad span anywhere, including a torn tail) and every empty `.seg` file is
#   moved aside into `<dir>/damaged-<UTC time>/` (hard link, then the original name is replaced or removed):
#   nothing is ever deleted;
# - the valid records of a damaged segment are written back byte for byte, with their seqs, without the bad
#   bytes: in stream history one file per run of consecutive seqs (a gap only ever lies between segments), in
#   a compacted segment one file;
# - every seq range no file holds any more is recorded as a known gap in highwater.json, and when the newest
#   segment is missing the next seq moves past anything it could have held (highwater.json's bound): seqs are
#   never reused;
# - a second run finds nothing to do, and the log then opens.
#
# Invariants:
# - `analyse` changes nothing; the caller holds the directory lock (`lock_directory`) for both steps;
# - `execute` writes every new file (temp, fsync, rename) before it removes an old name, so a crash in the
#   middle leaves a directory the log refuses to open (never one that silently lacks records) and that a
#   second repair finishes: files a first run wrote that duplicate a run of a damaged segment are recognised.

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

from engine.errors import StorageError

from . import recovery, segment as _seg
from .record import HEADER_SIZE
from .segment import Segment

EMPTY_SEGMENT_BYTES = 4096  # the file a repair starts new seqs in; the log grows it on the first append


class Finding:
    """One thing the repair drops or accepts. kind: damaged | torn | missing | newest | empty."""

    __slots__ = ("kind", "name", "offset", "nbytes", "records", "exact", "seqs", "detail")

    def __init__(self, kind: str, name: str = "", offset: int = 0, nbytes: int = 0, records: int = 0,
                 exact: bool = True, seqs: tuple[int, int | None] | None = None, detail: str = ""):
        self.kind, self.name, self.offset, self.nbytes = kind, name, offset, nbytes
        self.records, self.exact, self.seqs, self.detail = records, exact, seqs, detail

    def describe(self) -> str:
        seqs = _seqs_text(self.seqs)
        count = f"{self.records} record(s)" + ("" if self.exact else " (counted by their length fields)")
        if self.kind in ("damaged", "torn"):
            what = " (a torn tail: nothing valid after it)" if self.kind == "torn" else ""
            return (f"{self.kind:8} {self.name} at offset {self.offset} ({self.detail}){what}: drops "
                    f"{self.nbytes} bytes, {count}{', ' + seqs if seqs else ''}")
        if self.kind == "missing":
            return f"missing  {seqs}: no segment holds them ({self.detail})"
        if self.kind == "newest":
            return f"newest   {seqs}: {self.detail}"
        return f"empty    {self.name}: a segment file with no bytes ({self.detail})"


class Write:
    """A segment file the repair writes: `parts` are (offset, end) byte ranges of `source`'s data."""

    __slots__ = ("name", "source", "parts", "first_seq", "last_seq", "count")

    def __init__(self, name: str, source: str, parts: list[tuple[int, int]], first_seq: int, last_seq: int,
                 count: int):
        self.name, self.source, self.parts = name, source, parts
        self.first_seq, self.last_seq, self.count = first_seq, last_seq, count

    @property
    def nbytes(self) -> int:
        return sum(b - a for a, b in self.parts)


class Plan:
    """What `analyse` found and what `execute` will do."""

    def __init__(self, directory: str):
        self.directory = directory
        self.findings: list[Finding] = []
        self.move: list[str] = []          # file names moved aside
        self.writes: list[Write] = []      # segment files written (valid records of damaged ones)
        self.overwrite: set[str] = set()   # names left by an interrupted repair, rewritten by `writes`
        self.gaps: list[list[int]] = []    # known gaps to record (merged with highwater.json's)
        self.first_seq = 1
        self.next_seq = 1
        self.new_segment: int | None = None  # an empty segment from this seq (new seqs start past a loss)
        self.kept_records = 0
        self.segments = 0
        self.bytes = 0
        self.notes: list[str] = []         # things the log handles itself at open (reported only)
        self.highwater: dict = {}
        self.meta: dict = {}

    @property
    def needed(self) -> bool:
        return bool(self.findings)

    @property
    def dropped_records(self) -> int:
        return sum(f.records for f in self.findings if f.kind in ("damaged", "torn"))

    @property
    def dropped_bytes(self) -> int:
        return sum(f.nbytes for f in self.findings if f.kind in ("damaged", "torn"))


class _Seg:
    __slots__ = ("name", "path", "name_seq", "history", "walk", "size", "sealed")

    def __init__(self, name: str, path: str, name_seq: int):
        self.name, self.path, self.name_seq = name, path, name_seq
        self.history = True
        self.walk: recovery.Walk | None = None
        self.size = 0
        self.sealed = True


def analyse(directory: str, progress: Callable[[str], None] | None = None) -> Plan:
    """Read every segment of the log in `directory` and plan the repair (changes nothing)."""
    directory = str(directory)
    plan = Plan(directory)
    plan.meta = _seg.read_meta(directory)
    plan.highwater = _seg.read_highwater(directory) or {}
    found, leftovers = _seg.list_directory(directory)
    for path in leftovers:
        plan.notes.append(f"leftover {os.path.basename(path)}: removed by the server at open (unpublished or "
                          f"temporary: nothing in it was acknowledged)")
    meta_first = _int(plan.meta.get("first_seq"))
    meta_next = max(_int(plan.meta.get("next_seq")), 1)
    segs: list[_Seg] = []
    for name_seq, path in found:
        name = os.path.basename(path)
        if os.path.getsize(path) == 0:
            plan.findings.append(Finding("empty", name, detail="it held nothing; moved aside"))
            plan.move.append(name)
            continue
        segs.append(_Seg(name, path, name_seq))
    plan.segments = len(segs)
    if segs:
        segs[-1].sealed = False
        firsts = [s.name_seq for s in segs if s.name_seq >= meta_first]
        plan.first_seq = firsts[0] if firsts else segs[-1].name_seq
    else:
        plan.first_seq = max(meta_first, 1)
    prev_last = 0
    for i, s in enumerate(segs):
        s.history = s.name_seq >= plan.first_seq
        nxt = segs[i + 1].name_seq if i + 1 < len(segs) else None
        if progress is not None:
            progress(f"scanning {i + 1}/{len(segs)} {s.name} ({os.path.getsize(s.path) / (1 << 20):.1f} MiB)")
        seg = Segment.open(s.path, s.name_seq)
        try:
            s.size = seg.capacity
            plan.bytes += seg.capacity
            end = seg.last_nonzero(0)
            first = s.name_seq
            if not s.history:  # a compacted segment is named by its first record, which the log may rename
                hit = recovery.record_at(seg.mm, 0, end)
                if hit is not None:
                    first = hit[1]
            s.walk = recovery.walk(seg.mm, end, last_seq=(first - 1) if s.history else prev_last,
                                   contiguous=s.history, seq_limit=None if s.history else nxt)
        finally:
            seg.close()
        if s.history and prev_last and s.name_seq <= prev_last:
            _overlap(plan, segs[:i], s)
            continue
        if s.walk.runs:
            prev_last = s.walk.runs[-1].last_seq
    segs = [s for s in segs if s.name not in plan.overwrite]
    _plan_rewrites(plan, segs, meta_next)
    _plan_gaps(plan, segs, meta_next)
    plan.kept_records = sum(s.walk.count for s in segs)
    return plan


def _overlap(plan: Plan, before: list[_Seg], s: _Seg) -> None:
    """A history segment whose name is inside an earlier one's seqs: accepted only as the copy of a run that an
    interrupted repair wrote (the same records), which this repair writes again."""
    for b in before:
        for run in b.walk.runs if b.walk.damaged else ():
            if run.first_seq == s.name_seq and len(s.walk.runs) == 1 and not s.walk.spans \
                    and s.walk.runs[0].last_seq == run.last_seq:
                plan.overwrite.add(s.name)
                return
    raise StorageError(f"{s.path} starts at seq {s.name_seq}, inside the seqs of an earlier segment, and is not a "
                       f"copy an interrupted repair left: move one of them aside by hand")


def _plan_rewrites(plan: Plan, segs: list[_Seg], meta_next: int) -> None:
    for i, s in enumerate(segs):
        w = s.walk
        if not w.damaged:
            continue
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        for span in w.spans:
            torn = not s.sealed and span.next_seq is None and span is w.spans[-1]
            seqs: tuple[int, int | None] | None = span.lost
            records, exact = span.records, span.exact
            if span.next_seq is None and s.history:
                if nxt is not None and nxt.history:  # a sealed segment's tail: the next file says which seqs
                    records, exact = nxt.name_seq - span.after_seq - 1, True
                    seqs = (span.after_seq + 1, nxt.name_seq - 1) if records > 0 else None
                elif torn:
                    records = max(records, meta_next - 1 - span.after_seq)
                    seqs = (span.after_seq + 1, span.after_seq + records) if records > 0 else None
                    exact = exact or meta_next - 1 - span.after_seq >= records
            plan.findings.append(Finding("torn" if torn else "damaged", s.name, span.start, span.nbytes, records,
                                         exact, seqs, span.reason))
        plan.move.append(s.name)
        if s.history:
            for run in w.runs:
                plan.writes.append(Write(_seg.segment_name(run.first_seq), s.name, [(run.start, run.end)],
                                         run.first_seq, run.last_seq, run.count))
        elif w.runs:
            plan.writes.append(Write(_seg.segment_name(w.runs[0].first_seq), s.name,
                                     [(r.start, r.end) for r in w.runs], w.runs[0].first_seq, w.runs[-1].last_seq,
                                     w.count))


def _plan_gaps(plan: Plan, segs: list[_Seg], meta_next: int) -> None:
    """Seq ranges no history file holds after the repair: known gaps; and where new seqs start."""
    recorded = plan.highwater.get("gaps") or []
    layout: list[tuple[int, int, str]] = []  # (first, last, name) of every history file after the repair
    for s in segs:
        if not s.history:
            continue
        if s.walk.damaged:
            layout += [(r.first_seq, r.last_seq, _seg.segment_name(r.first_seq)) for r in s.walk.runs]
        else:
            last = s.walk.runs[-1].last_seq if s.walk.runs else s.name_seq - 1
            layout.append((s.name_seq, last, s.name))
    made = []
    damaged_seqs = [f.seqs for f in plan.findings if f.seqs and f.kind in ("damaged", "torn")]
    for first, last, before, after in recovery.missing_ranges(layout, recorded):
        made.append((first, last))
        if not any(d[0] <= first and last <= (d[1] if d[1] is not None else last) for d in damaged_seqs):
            plan.findings.append(Finding("missing", seqs=(first, last), detail=f"between {before} and {after}"))
    last_seq = max([f[1] for f in layout] + [s.walk.runs[-1].last_seq for s in segs if s.walk.runs] + [0])
    next_seq = max(last_seq + 1, meta_next)
    newest = plan.highwater.get("segment")
    if isinstance(newest, int) and not any(s.name_seq >= newest for s in segs):
        bound = max(_int(plan.highwater.get("bound")), newest + 1)
        next_seq = max(next_seq, bound)
        plan.findings.append(Finding("newest", seqs=(last_seq + 1, next_seq - 1), detail=(
            f"the newest segment (from seq {newest}, recorded in highwater.json) is missing; the seqs it could "
            f"have held are skipped: new records start at seq {next_seq}")))
    if plan.findings and next_seq > last_seq + 1:
        plan.new_segment = next_seq
        made.append((last_seq + 1, next_seq - 1))
    plan.next_seq = next_seq
    plan.gaps = recovery.merge_gaps(recorded, made, plan.first_seq)


def execute(plan: Plan, progress: Callable[[str], None] | None = None) -> str | None:
    """Carry out `plan` (see the module comment for the order); returns the directory files were moved to."""
    if not plan.needed:
        return None
    say = progress or (lambda _msg: None)
    d = plan.directory
    aside = None
    if plan.move:
        aside = os.path.join(d, "damaged-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = aside.split("+")[0] + f"+{n}"
        os.mkdir(aside)
        for name in plan.move:
            _keep_copy(os.path.join(d, name), os.path.join(aside, name))
            say(f"moved    {name} -> {os.path.basename(aside)}/{name}")
        _seg.fsync_dir(aside)
        _seg.fsync_dir(d)
    # valid records back, the later runs of a segment first: until its first name is replaced the log sees
    # overlapping segments and refuses to open, never a directory that silently lacks records
    for w in sorted(plan.writes, key=lambda w: (w.source, -w.first_seq)):
        src = os.path.join(aside, w.source)
        with open(src, "rb") as fh:
            chunks = []
            for a, b in w.parts:
                fh.seek(a)
                chunks.append(fh.read(b - a))
        _seg.write_file_atomic(os.path.join(d, w.name), chunks, tmp_suffix=".tmp")
        say(f"wrote    {w.name}: seqs {w.first_seq}..{w.last_seq} ({w.count} record(s), {w.nbytes} bytes)")
    written = {w.name for w in plan.writes}
    for name in plan.move:
        if name not in written:
            _seg.remove(os.path.join(d, name))
    if plan.new_segment is not None:
        name = _seg.segment_name(plan.new_segment)
        _seg.write_file_atomic(os.path.join(d, name), [bytes(EMPTY_SEGMENT_BYTES)])
        say(f"wrote    {name}: empty, new records start at seq {plan.new_segment}")
    _seg.fsync_dir(d)
    newest = _newest_after(plan)
    hw = dict(plan.highwater)
    hw["gaps"] = plan.gaps
    if newest is not None:
        first, capacity = newest
        hw["segment"] = first
        hw["bound"] = max(_int(hw.get("bound")), recovery.seq_bound(first, capacity))
    _seg.write_highwater(d, hw)
    _seg.write_meta(d, {"first_seq": plan.first_seq, "next_seq": plan.next_seq})
    return aside


def _newest_after(plan: Plan) -> tuple[int, int] | None:
    """(first seq, bytes) of the newest segment file once the repair is done."""
    best = None
    for seq, path in _seg.list_directory(plan.directory)[0]:
        size = os.path.getsize(path)
        if size and (best is None or seq > best[0]):
            best = (seq, max(size, HEADER_SIZE))
    return best


def _keep_copy(src: str, dst: str) -> None:
    """Keep `src`'s bytes at `dst` (a hard link; a copy where links are not possible), durably."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _seqs_text(seqs) -> str:
    if not seqs:
        return ""
    first, last = seqs
    if last is None:
        return f"seqs from {first}"
    return f"seq {first}" if first == last else f"seqs {first}..{last}"


def _int(value) -> int:
    return value if isinstance(value, int) else 0
