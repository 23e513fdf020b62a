"""Recovery at open (issue 21, item 9): damage refuses to open and changes nothing, a torn tail is cut with exact
counts, a missing segment (middle or newest, with or without meta.json) refuses naming the seqs; recovery.py's
forward scan at its edges."""

import json
import logging
import os

import pytest

from engine.errors import CorruptLog, DamagedSegment, MissingSegments
from engine.log import recovery
from engine.log.record import HEADER_SIZE, PUT, encode
from engine.log.store import LOC_MASK


def fill(log, user, n, size=100):
    recs = [log.append(PUT, user, f"/pub/k{i:03d}", bytes([i % 256]) * size) for i in range(n)]
    log.flush()
    return recs


def offset(rec):
    return rec.loc & LOC_MASK


def files(d):
    """Every file's bytes: a refused open must leave them all as they were."""
    return {name: open(os.path.join(d, name), "rb").read() for name in sorted(os.listdir(d)) if name != "LOCK"}


def crashed(log, logdir):
    """Close and drop meta.json, as a crash (meta.json is written at close) leaves the directory."""
    log.close()
    os.unlink(os.path.join(logdir, "meta.json"))


def flip(path, off, nbytes=1):
    with open(path, "r+b") as fh:
        fh.seek(off)
        b = fh.read(nbytes)
        fh.seek(off)
        fh.write(bytes(x ^ 0xFF for x in b))


def reopened_values(open_log):
    log = open_log()
    return log, {r.seq: bytes(r.value) for r in log.read_from(1)}


# ---- damage in the active segment


def test_open_refuses_four_overwritten_bytes_with_valid_records_after_them(open_log, logdir, user):
    log = open_log(segment_bytes=1 << 20)
    recs = fill(log, user, 126)
    path = log.segments()[-1][0]
    crashed(log, logdir)
    with open(path, "r+b") as fh:  # the measurement of the issue: 4 bytes at offset 300
        fh.seek(300)
        fh.write(b"\xde\xad\xbe\xef")
    before = files(logdir)
    with pytest.raises(DamagedSegment) as info:
        open_log()
    err = info.value
    bad = next(r for r in recs if offset(r) <= 300 < offset(r) + HEADER_SIZE + len(r.path) + 100)
    assert (err.path, err.offset) == (path, offset(bad))
    assert err.valid_after == 126 - bad.seq and err.lost == (bad.seq, bad.seq)
    assert path in str(err) and f"offset {offset(bad)}" in str(err) and f"{126 - bad.seq} valid" in str(err)
    assert isinstance(err, CorruptLog)
    assert files(logdir) == before  # refused: nothing truncated, nothing acknowledged lost


def test_open_refuses_one_flipped_byte_in_the_second_to_last_record(open_log, logdir, user):
    log = open_log()
    recs = fill(log, user, 20)
    path = log.segments()[-1][0]
    crashed(log, logdir)
    flip(path, offset(recs[-2]) + HEADER_SIZE + 10)  # inside its path: CRC mismatch, framing sound
    before = files(logdir)
    with pytest.raises(DamagedSegment) as info:
        open_log()
    assert (info.value.offset, info.value.valid_after, info.value.lost) == (offset(recs[-2]), 1, (19, 19))
    assert info.value.reason == "CRC mismatch"
    assert files(logdir) == before


def test_open_cuts_one_flipped_byte_in_the_last_record_as_a_torn_tail(open_log, logdir, user, caplog):
    log = open_log()
    recs = fill(log, user, 20)
    path = log.segments()[-1][0]
    end = log.segments()[-1][3]
    crashed(log, logdir)
    flip(path, offset(recs[-1]) + HEADER_SIZE + 10)
    with caplog.at_level(logging.WARNING, logger="homestream.log"):
        log, values = reopened_values(open_log)
    assert log.last_seq == 19 and sorted(values) == list(range(1, 20))
    assert log.stats.truncated_records_total == 1
    assert log.stats.truncated_bytes_total == end - offset(recs[-1])
    assert any(path in m and "seqs from 20" in m for m in caplog.messages)


def test_open_cuts_a_torn_tail_of_two_records_and_counts_both(open_log, logdir, user):
    log = open_log()
    recs = fill(log, user, 20)
    path = log.segments()[-1][0]
    end = log.segments()[-1][3]
    crashed(log, logdir)
    for r in recs[-2:]:  # both last writes cut short (as the page cache left them after a power loss)
        with open(path, "r+b") as fh:
            fh.seek(offset(r) + HEADER_SIZE + 20)
            fh.write(bytes(50))
    log = open_log()
    assert log.last_seq == 18
    assert log.stats.truncated_records_total == 2
    assert log.stats.truncated_bytes_total == end - offset(recs[-2])


def test_open_refuses_a_bad_length_in_the_first_record_and_counts_exactly(open_log, logdir, user):
    log = open_log()
    recs = fill(log, user, 57)
    path = log.segments()[-1][0]
    crashed(log, logdir)
    with open(path, "r+b") as fh:
        fh.write((HEADER_SIZE + 1).to_bytes(4, "little"))  # the first record's length: wrong, framing unsound
    with pytest.raises(DamagedSegment) as info:
        open_log()
    err = info.value
    assert (err.offset, err.lost, err.valid_after, err.bad_bytes) == (0, (1, 1), 56, offset(recs[1]))
    assert err.reason == "bad framing"


def test_open_refuses_damage_in_a_sealed_segment_with_the_count_after_it(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    recs = fill(log, user, 60)
    first_path, first, last, _n, _c = log.segments()[0]
    log.close()
    flip(first_path, offset(recs[2]) + 4)  # the third record's CRC field
    with pytest.raises(DamagedSegment) as info:
        open_log()
    assert info.value.path == first_path and info.value.offset == offset(recs[2])
    assert info.value.valid_after == last - 3 and info.value.lost == (3, 3)


# ---- missing segments


def test_open_refuses_a_missing_middle_segment_naming_the_seq_range(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    fill(log, user, 60)
    segs = log.segments()
    assert len(segs) >= 4
    log.close()
    os.unlink(segs[1][0])
    before = files(logdir)
    with pytest.raises(MissingSegments) as info:
        open_log()
    assert (info.value.first, info.value.last) == (segs[1][1], segs[2][1] - 1)
    assert f"seqs {segs[1][1]}..{segs[2][1] - 1}" in str(info.value)
    assert files(logdir) == before


@pytest.mark.parametrize("keep_meta", [True, False])
def test_open_refuses_a_missing_newest_segment_with_or_without_meta_json(open_log, logdir, user, keep_meta):
    log = open_log(segment_bytes=4096)
    fill(log, user, 60)
    segs = log.segments()
    log.close()
    os.unlink(segs[-1][0])
    if not keep_meta:
        os.unlink(os.path.join(logdir, "meta.json"))
    with pytest.raises(MissingSegments) as info:
        open_log()
    assert info.value.first == segs[-2][2] + 1
    assert info.value.last == (60 if keep_meta else None)
    hw = json.load(open(os.path.join(logdir, "highwater.json")))
    assert hw["segment"] == segs[-1][1] and hw["bound"] > 60
    assert f"from seq {segs[-1][1]}" in str(info.value)


def test_open_refuses_when_every_segment_is_gone_but_highwater_json_is_left(open_log, logdir, user):
    log = open_log()
    fill(log, user, 5)
    path = log.segments()[0][0]
    log.close()
    os.unlink(path)
    os.unlink(os.path.join(logdir, "meta.json"))
    with pytest.raises(MissingSegments):
        open_log()
    assert not [f for f in os.listdir(logdir) if f.endswith(".seg")]  # nothing was created either


def test_open_records_the_gap_it_makes_and_accepts_it_on_every_later_open(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    fill(log, user, 10)
    path, _f, _l, end, _c = log.segments()[-1]
    log.close()  # meta.json: next seq 11
    with open(path, "r+b") as fh:  # tear the last (acknowledged) record: seq 10 is lost and never reused
        fh.seek(end - 10)
        fh.write(b"\xff" * 10)
    log = open_log(segment_bytes=4096)
    assert log.append(PUT, user, "/pub/after", b"a").seq == 11
    fill(log, user, 30)  # rolls a few segments past the gap
    log.close()
    assert json.load(open(os.path.join(logdir, "highwater.json")))["gaps"] == [[10, 10]]
    for _ in range(2):
        log = open_log(segment_bytes=4096)
        assert [r.seq for r in log.read_from(1)] == list(range(1, 10)) + list(range(11, 42))
        log.close()


def test_highwater_json_follows_each_roll_before_its_records_are_acknowledged(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    for i in range(40):
        rec = log.append(PUT, user, f"/pub/r{i}", b"x" * 200)
        log.flush()
        hw = json.load(open(os.path.join(logdir, "highwater.json")))
        newest = log.segments()[-1]
        assert hw["segment"] == newest[1] and hw["bound"] > rec.seq
    assert len(log.segments()) > 3


# ---- the forward scan


def _rec(seq, user, value=b"v" * 50, path="/pub/a"):
    return encode(seq, 1, PUT, user, path, b"\x01" * 32, "", value)


def test_walk_never_takes_a_record_inside_a_value_for_one(user):
    inner = _rec(3, user)  # a framed record with the very seq that follows, stored as a value
    holder = _rec(2, user, value=b"x" * 10 + inner + b"y" * 10)
    first = _rec(1, user)
    buf = bytearray(first + holder + _rec(3, user) + _rec(4, user))
    real3 = len(first) + len(holder)
    buf[len(first) + 4] ^= 0xFF  # record 2's CRC field: framing sound, so it is skipped whole
    w = recovery.walk(buf, len(buf), last_seq=0, contiguous=True)
    assert [(r.first_seq, r.last_seq, r.start) for r in w.runs] == [(1, 1, 0), (3, 4, real3)]
    assert [(s.lost, s.reason) for s in w.spans] == [((2, 2), "CRC mismatch")]
    buf[len(first) + 9] = 7  # record 2's kind too: framing unsound, the scan looks inside it
    w = recovery.walk(buf, len(buf), last_seq=0, contiguous=True)
    # the copy inside the value is followed by garbage, the real record 3 by record 4: the real one wins
    assert [(r.first_seq, r.last_seq, r.start) for r in w.runs] == [(1, 1, 0), (3, 4, real3)]


def test_resync_bounds_the_seq_by_the_bytes_the_bad_spot_could_hold(user):
    one = _rec(1, user)
    # seq 5 right after one bad record: 3 records missing in fewer than 3 * HEADER_SIZE bytes is not plausible
    buf = bytearray(one + _rec(2, user) + _rec(5, user))
    buf[len(one) + 4] ^= 0xFF
    w = recovery.walk(buf, len(buf), last_seq=0, contiguous=True)
    assert w.count == 1 and w.torn_tail_only
    assert recovery.plausible(4, 1, 0, 2 * HEADER_SIZE, contiguous=True)
    assert not recovery.plausible(5, 1, 0, 2 * HEADER_SIZE + HEADER_SIZE - 1, contiguous=True)
    assert not recovery.plausible(2, 1, 0, 1000, contiguous=True)  # the bad spot held at least one record


def test_merge_gaps_merges_adjacent_ranges_and_drops_those_before_history():
    assert recovery.merge_gaps([[5, 6]], [(7, 9), (20, 20)], keep_from=0) == [[5, 9], [20, 20]]
    assert recovery.merge_gaps([[5, 6], [20, 20]], [], keep_from=10) == [[20, 20]]
    assert recovery.covered(6, 9, [[5, 9]]) and not recovery.covered(4, 9, [[5, 9]])


def test_a_segment_is_published_before_any_of_its_records_is_acknowledged(open_log, logdir, user, monkeypatch):
    """A roll made while a commit runs (here: from inside the seal of the segment before) must not leave the
    committed segment unpublished: open removes '.pending' files, so its acknowledged records would be lost."""
    from engine.log.segment import Segment

    log = open_log(segment_bytes=4096, fsync="always")
    fill(log, user, 3, size=500)
    real_seal, real_sync = Segment.seal, Segment.sync
    synced_pending, rolled = [], []

    def seal_then_roll(seg):
        real_seal(seg)
        if not rolled:
            rolled.append(log.append(PUT, user, "/pub/roll2", b"y" * 3000))  # does not fit: another roll

    def sync(seg):
        if seg.pending:
            synced_pending.append(seg.path)
        real_sync(seg)

    monkeypatch.setattr(Segment, "seal", seal_then_roll)
    monkeypatch.setattr(Segment, "sync", sync)
    x = log.append(PUT, user, "/pub/roll1", b"x" * 3000)  # rolls: the commit covering it seals the first segment
    log.flush()
    log.flush()
    assert rolled and log.durable_seq >= rolled[0].seq > x.seq
    assert synced_pending == []
    monkeypatch.undo()
    log.close()
    log = open_log(segment_bytes=4096)
    assert [r.seq for r in log.read_from(1)] == [1, 2, 3, 4, 5]


def test_a_bad_last_record_that_meta_json_knew_is_cut_with_an_error_naming_its_seqs(open_log, logdir, user,
                                                                                   caplog):
    log = open_log()
    fill(log, user, 20)
    path, _f, _l, end, _c = log.segments()[-1]
    log.close()  # a clean close: meta.json says next seq 21, so seq 20 had been acknowledged
    with open(path, "r+b") as fh:
        fh.seek(end - 10)
        fh.write(b"\xff" * 10)
    with caplog.at_level(logging.WARNING, logger="homestream.log"):
        log = open_log()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "seqs 20..20" in errors[0].getMessage() and path in errors[0].getMessage()
    assert log.append(PUT, user, "/pub/x", b"x").seq == 21
