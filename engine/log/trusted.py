# engine/log/trusted.py: a prefix of the log that recovery may skip scanning, because a checkpoint
# (engine/keyspace/checkpoint.py) recorded what the scan found there, and the files still hold it.
#
# What it is for: a restart that reads only the records written after the checkpoint (issue 18 item 6).
# What must stay true:
# - the log overrides the checkpoint: the prefix is used only if the checkpoint's segments are exactly the first
#   segments of the directory (same first seqs, in order, each at least as long as recorded), first_seq is the
#   one meta.json gives, and in each of them the record the checkpoint names as the last one is there: same
#   offset, same seq, a valid CRC equal to the recorded one, ending exactly where the recorded data ends;
#   anything else rejects the whole checkpoint (the caller logs why and scans everything);
# - the scan of each segment resumes where the recorded prefix ends, with the recorded counts, so records
#   written after the checkpoint are checked and indexed like any other.
#
# Limit: records inside the prefix are not CRC-checked again at this open (the checkpoint was taken from a log
# that had checked them); damage that appears later inside a sealed segment is found by `homestream repair`.

from __future__ import annotations

from array import array
from typing import NamedTuple

from .record import MAGIC, PREFIX, crc32c


class SegmentState(NamedTuple):
    """What a scan of a segment's first `used` bytes found (and what the checkpoint keeps of it)."""
    first_seq: int
    used: int
    count: int
    last_seq: int
    last_ts: int
    since: int         # records since the last sparse-index entry
    last_off: int      # offset of the last record (-1 if none)
    last_crc: int
    index_seqs: bytes  # array("Q") bytes of the sparse index
    index_offsets: bytes


def state_of(seg, used: int, count: int, last_seq: int, last_ts: int) -> SegmentState:
    """The state of `seg` up to `used` (its records up to `last_seq`): walks from the last sparse-index entry
    to find the last record. Reads only the map (any thread)."""
    mm = seg.mm if seg.mm is not None else seg.mv
    seqs, offs = seg.index.seqs, seg.index.offsets
    n = 0
    while n < len(offs) and offs[n] < used:
        n += 1
    off = offs[n - 1] if n else 0
    since = 0
    last_off, last_crc = -1, 0
    unpack = PREFIX.unpack_from
    while off < used:
        length, crc, _m, _k, _p, _c, _f, _seq, _t, _v = unpack(mm, off)
        last_off, last_crc = off, crc
        since += 1
        off += length
    interval = seg.index.interval
    since = since % interval if n else 0
    return SegmentState(seg.first_seq, used, count, last_seq, last_ts, since, last_off, last_crc,
                        array("Q", seqs[:n]).tobytes(), array("Q", offs[:n]).tobytes())


def verify(segments: list, states: list[SegmentState], first_seq: int, meta_first: int) -> str | None:
    """None if every state still describes its segment (see the module comment), else the reason it does not."""
    if first_seq != meta_first:
        return f"first_seq {first_seq} but meta.json says {meta_first} (retention ran since)"
    if len(states) > len(segments):
        return f"it names {len(states)} segments, the directory has {len(segments)}"
    for seg, st in zip(segments, states):
        if seg.first_seq != st.first_seq:
            return f"segment {st.first_seq} is not where it was (found {seg.first_seq})"
        if st.used > seg.capacity:
            return f"segment {st.first_seq} is shorter ({seg.capacity} bytes) than recorded ({st.used})"
        if st.count == 0:
            if st.used != 0:
                return f"segment {st.first_seq}: bytes without records"
            continue
        off = st.last_off
        if off < 0 or off + 120 > st.used:
            return f"segment {st.first_seq}: bad last offset"
        length, crc, magic, _k, _p, _c, _f, seq, _t, _v = PREFIX.unpack_from(seg.mm, off)
        if (magic != MAGIC or seq != st.last_seq or crc != st.last_crc or off + length != st.used
                or crc32c(seg.mv[off + 8:off + length]) != crc):
            return f"segment {st.first_seq}: the record at offset {off} is not seq {st.last_seq} as recorded"
    return None


def adopt_ids(segments: list, old_ids: list, floor: int) -> bool:
    """Give the first segments the ids the checkpoint's process knew them by, so that its locations are valid
    as they are (no remapping of a million keys). Only when none of those ids was handed out in this process
    before this open (all >= `floor`, the id source's next id when the open began) and they are distinct: a
    location still names one record for the life of the process. The later segments get fresh ids past them.
    False (nothing changed) otherwise."""
    from .segment import Segment

    n = len(old_ids)
    if not n or len(set(old_ids)) != n or min(old_ids) < floor or n > len(segments):
        return False
    Segment._ids.reserve_through(max(old_ids))
    for seg, seg_id in zip(segments, old_ids):
        seg.adopt_id(seg_id)
    for seg in segments[n:]:
        seg.adopt_id(Segment._ids.take())
    return True


def resume(seg, st: SegmentState) -> tuple[int, int, int, int, int]:
    """Fill `seg`'s sparse index from the state; (offset, count, last_seq, last_ts, since) to resume its scan."""
    seg.index.seqs.frombytes(st.index_seqs)
    seg.index.offsets.frombytes(st.index_offsets)
    return st.used, st.count, st.last_seq, st.last_ts, st.since
