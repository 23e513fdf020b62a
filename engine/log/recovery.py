# engine/log/recovery.py: damage analysis of segment bytes, as pure functions over buffers (no file I/O).
#
# What it is for: telling a torn tail from damage, counting exactly what a bad spot costs, and finding seq ranges
# that no segment holds. Log recovery (store.py) uses it to refuse or truncate; `homestream repair` (repair.py)
# uses the same walk to rewrite a damaged segment without its bad bytes.
#
# Vocabulary:
# - a *valid record* at an offset: length, magic, kind, field lengths and CRC all agree (record.check) AND its
#   seq continues the segment plausibly: in stream history (contiguous seqs) the next seq, or after a bad spot
#   at most as many seqs further as the bad bytes could have held (one record is at least HEADER_SIZE bytes);
#   in a compacted segment, any seq after the last one (and before `seq_limit`, the next segment's first seq);
# - a *bad span*: bytes between valid records (or after the last one) that hold no valid record;
# - a *torn tail*: a bad span at the end of the active segment with no valid record after it (a crash cut the
#   last write(s)); anything else (a bad span followed by a valid record, or any bad span in a sealed segment)
#   is *damage*.
#
# Invariants:
# - nothing here decides to drop anything: functions report; store.py refuses or truncates, repair.py rewrites;
# - a record inside another record's value is never taken for a record unless its seq fits the bound above
#   (that bound, and the CRC, are what make the forward scan after a bad spot safe);
# - counts of dropped records are exact whenever seqs tell them (a bad span followed by a valid record in
#   history: next seq - last seq - 1); only a torn tail's count is an estimate from its length fields.

from __future__ import annotations

import re

from .record import HEADER_SIZE, MAGIC, MAGIC_V2, PREFIX, PREFIX_SIZE, U32, BadRecord, check, framing_ok

# a record's magic byte followed by a known kind, in either record version: where a record's offset + 8 may be
_CANDIDATE = re.compile(rb"\xb1[\x01\x02]|\xb2[\x01\x02\x03]")


class Span:
    """Bytes [start, end) of a segment that hold no valid record.

    after_seq: the last valid seq before the span (or the seq before the segment's first);
    next_seq: the seq of the valid record just after it, None if the span runs to the end of the data;
    records: how many records the bytes held (exact when `exact`)."""

    __slots__ = ("start", "end", "reason", "after_seq", "next_seq", "records", "exact")

    def __init__(self, start: int, end: int, reason: str, after_seq: int, next_seq: int | None, records: int,
                 exact: bool):
        self.start, self.end, self.reason = start, end, reason
        self.after_seq, self.next_seq, self.records, self.exact = after_seq, next_seq, records, exact

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def lost(self) -> tuple[int, int] | None:
        """The (first, last) seqs the span held, when exact and not empty."""
        if self.exact and self.records:
            return self.after_seq + 1, self.after_seq + self.records
        return None

    def __repr__(self) -> str:
        return (f"Span({self.start}..{self.end}, {self.reason!r}, after={self.after_seq}, next={self.next_seq}, "
                f"records={self.records}{'' if self.exact else '?'})")


class Run:
    """Consecutive valid records at [start, end): seqs first_seq..last_seq, `count` records."""

    __slots__ = ("start", "end", "first_seq", "last_seq", "count", "offsets")

    def __init__(self, start: int, first_seq: int):
        self.start = self.end = start
        self.first_seq = self.last_seq = first_seq
        self.count = 0
        self.offsets: list[int] = []

    def __repr__(self) -> str:
        return f"Run({self.start}..{self.end}, seqs {self.first_seq}..{self.last_seq}, {self.count})"


class Walk:
    """What `walk` found in a segment: runs of valid records and bad spans, in file order."""

    __slots__ = ("runs", "spans", "end", "last_seq")

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.spans: list[Span] = []
        self.end = 0
        self.last_seq = 0

    @property
    def count(self) -> int:
        return sum(r.count for r in self.runs)

    @property
    def damaged(self) -> bool:
        return bool(self.spans)

    @property
    def torn_tail_only(self) -> bool:
        """One bad span, at the end, with no valid record after it."""
        return len(self.spans) == 1 and self.spans[0].next_seq is None

    def valid_after(self, offset: int) -> int:
        return sum(r.count for r in self.runs if r.start >= offset)


def record_at(buf, off: int, end: int) -> tuple[int, int] | None:
    """(length, seq) of a whole record with good framing and CRC at `off` (not past `end`), else None."""
    if off < 0 or end - off < HEADER_SIZE:
        return None
    try:
        length = check(buf, off, end)
    except BadRecord:
        return None
    return length, PREFIX.unpack_from(buf, off)[7]


def why_bad(buf, off: int, end: int) -> str:
    """A short reason why no record with good framing and CRC starts at `off`."""
    if end - off < PREFIX_SIZE:
        return "truncated header"
    if U32.unpack_from(buf, off)[0] == 0:
        return "data after the end of the records"
    try:
        check(buf, off, end)
    except BadRecord as exc:
        return exc.reason
    return "bad record"


def plausible(seq: int, last_seq: int, bad_off: int, off: int, *, contiguous: bool,
              seq_limit: int | None = None) -> bool:
    """May a valid record with `seq` at `off` follow a bad spot at `bad_off` after `last_seq`?

    In history the bad spot starts where a record started (the one before it ended there), so at least that
    record is missing (seq >= last_seq + 2) and at most as many as the bad bytes could hold."""
    if seq <= last_seq or (seq_limit is not None and seq >= seq_limit):
        return False
    if contiguous:
        return 1 <= seq - last_seq - 1 <= (off - bad_off) // HEADER_SIZE
    return True


def resync(buf, bad_off: int, end: int, last_seq: int, *, contiguous: bool,
           seq_limit: int | None = None) -> tuple[int, int, int] | None:
    """(offset, length, seq) of the first valid record (see the module comment) after the bad spot at
    `bad_off` and before `end`, or None: the forward scan that tells damage from a torn tail.

    A bad record whose framing is sound (only its CRC failed) is skipped whole, so nothing inside its value is
    taken for a record. Of the plausible candidates the first one that its successor confirms (the next seq
    starts right after it, or the data ends there) wins; the first plausible one if none is confirmed."""
    scan_from = bad_off + 1
    if end - bad_off >= PREFIX_SIZE:
        length, _c, magic, kind, plen, clen, flags, _s, _t, vlen = PREFIX.unpack_from(buf, bad_off)
        if framing_ok(magic, kind, plen, clen, flags, vlen, length):
            scan_from = bad_off + length
    first = None
    for m in _CANDIDATE.finditer(buf, scan_from + 8, end):
        off = m.start() - 8
        hit = record_at(buf, off, end)
        if not hit or not plausible(hit[1], last_seq, bad_off, off, contiguous=contiguous, seq_limit=seq_limit):
            continue
        length, seq = hit
        after = off + length
        if after >= end:
            confirmed = True
        else:
            nxt = record_at(buf, after, end)
            confirmed = nxt is not None and (nxt[1] == seq + 1 if contiguous else nxt[1] > seq)
        if confirmed:
            return off, length, seq
        if first is None:
            first = (off, length, seq)
    return first


def count_record_starts(buf, off: int, end: int) -> int:
    """How many records a torn tail [off, end) held, by following its length fields: the last one counted may
    be cut. 0 for an empty span; at least 1 otherwise."""
    n = 0
    while off < end:
        n += 1
        if end - off < PREFIX_SIZE:
            break
        length = U32.unpack_from(buf, off)[0]
        if length < HEADER_SIZE or off + length >= end or buf[off + 8] not in (MAGIC, MAGIC_V2):
            break
        off += length
    return n


def walk(buf, end: int, *, last_seq: int, contiguous: bool, start: int = 0,
         seq_limit: int | None = None) -> Walk:
    """Every valid record and bad span of a segment's data [start, end) (`end`: past its last non-zero byte).

    `last_seq`: the seq before the first one expected (a history segment: its name's seq - 1); `contiguous`:
    the segment is stream history (seqs follow each other); `seq_limit`: no seq at or past it is plausible."""
    out = Walk()
    off = start
    run: Run | None = None
    while off < end:
        hit = record_at(buf, off, end)
        if hit is not None:
            length, seq = hit
            if (seq == last_seq + 1) if contiguous else (seq > last_seq and (seq_limit is None or seq < seq_limit)):
                if run is None:
                    run = Run(off, seq)
                    out.runs.append(run)
                run.offsets.append(off)
                run.count += 1
                run.last_seq = last_seq = seq
                off += length
                run.end = off
                continue
            reason = f"seq {seq} where {last_seq + 1} was expected" if contiguous else f"seq {seq} out of order"
        else:
            reason = why_bad(buf, off, end)
        run = None
        found = resync(buf, off, end, last_seq, contiguous=contiguous, seq_limit=seq_limit)
        if found is None:
            out.spans.append(Span(off, end, reason, last_seq, None, count_record_starts(buf, off, end), False))
            off = end
            break
        nxt, _length, seq = found
        if contiguous:
            out.spans.append(Span(off, nxt, reason, last_seq, seq, seq - last_seq - 1, True))
            last_seq = seq - 1  # the span held the seqs in between
        else:
            out.spans.append(Span(off, nxt, reason, last_seq, seq, count_record_starts(buf, off, nxt), False))
        off = nxt
    out.end = off
    out.last_seq = last_seq
    return out


def missing_ranges(segments: list[tuple[int, int, str]], gaps: list) -> list[tuple[int, int, str, str]]:
    """Seq ranges between consecutive history segments [(first_seq, last_seq, name)] that no known gap
    (a (first, last) range skipped on purpose and recorded in highwater.json) covers:
    [(first missing, last missing, name before, name after)]."""
    out = []
    for (_f0, last0, name0), (first1, _l1, name1) in zip(segments, segments[1:]):
        if first1 > last0 + 1 and not covered(last0 + 1, first1 - 1, gaps):
            out.append((last0 + 1, first1 - 1, name0, name1))
    return out


def covered(first: int, last: int, gaps) -> bool:
    """Is every seq in [first, last] inside one recorded gap (gaps are recorded exactly as they were made)?"""
    for gap in gaps or ():
        try:
            g0, g1 = int(gap[0]), int(gap[1])
        except (TypeError, ValueError, IndexError):
            continue
        if g0 <= first and last <= g1:
            return True
    return False


def merge_gaps(gaps, new, keep_from: int = 0) -> list[list[int]]:
    """`gaps` with the (first, last) ranges of `new` added, overlapping or adjacent ranges merged, and those
    wholly before `keep_from` (the first seq of stream history, where no hole check runs) dropped."""
    ranges = []
    for gap in list(gaps or ()) + list(new):
        try:
            a, b = int(gap[0]), int(gap[1])
        except (TypeError, ValueError, IndexError):
            continue
        if b >= keep_from and a <= b:
            ranges.append((a, b))
    merged: list[list[int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def seq_bound(first_seq: int, capacity: int) -> int:
    """A seq no record of a segment from `first_seq` with `capacity` bytes can reach (a record is at least
    HEADER_SIZE bytes): recorded at roll time so that a lost newest segment's seqs are never reused."""
    return first_seq + max(capacity, HEADER_SIZE) // HEADER_SIZE
