"""Version 2 records (MAGIC_V2: version 1 plus an extension block after the value, and the GAP kind): framing,
round trips through every reader, recovery of a torn v2 tail, retention, and v1 records beside them."""

import os

import pytest
from hypothesis import given, strategies as st

from engine.log import record
from engine.log.record import (DEL, GAP, HEADER_SIZE, MAGIC, MAGIC_V2, PUT, BadRecord, check, decode,
                               decode_records, encode)
from engine.names import encode_user

USER = encode_user(bytes(range(32)))
DIGEST = bytes(range(100, 132))


def test_v2_record_has_magic_b2_ext_len_in_flags_and_ext_after_value():
    got = encode(9, 1700000000000, PUT, USER, "/pub/a", DIGEST, "", b"body", ext=b"EXT!")
    assert got[8] == MAGIC_V2
    assert int.from_bytes(got[14:16], "little") == 4
    assert len(got) == HEADER_SIZE + len("/pub/a") + 4 + 4
    assert got.endswith(b"body" + b"EXT!")
    assert check(got) == len(got)


def test_v1_record_without_ext_is_unchanged_magic_b1():
    got = encode(9, 1, PUT, USER, "/pub/a", DIGEST, "", b"body")
    assert got[8] == MAGIC and got[14:16] == b"\0\0"
    assert decode(got).ext == b""


@given(st.sampled_from([PUT, DEL, GAP]), st.binary(max_size=64), st.binary(min_size=1, max_size=300))
def test_v2_round_trip_decode_and_decode_records(kind, value, ext):
    value = value if kind == PUT else b""
    data = encode(3, 5, kind, USER, "/pub/x/y", DIGEST if kind != DEL else b"", "", value, ext=ext)
    rec = decode(data)
    assert (rec.kind, bytes(rec.value), bytes(rec.ext)) == (kind, value, ext)
    v1 = encode(4, 6, PUT, USER, "/pub/z", DIGEST, "text/plain", b"v1")
    both = list(decode_records(data + v1 + bytes(HEADER_SIZE), verify=True))
    assert [r.seq for r in both] == [3, 4]
    assert bytes(both[0].ext) == ext and both[1].ext == b""


def test_gap_kind_needs_version_2():
    with pytest.raises(ValueError):
        encode(1, 1, GAP, USER, "/", b"", "", b"")
    assert decode(encode(1, 1, GAP, USER, "/", b"", "", b"", ext=b"g")).kind == GAP


def test_v2_wrong_ext_len_is_bad_framing_and_a_flipped_ext_byte_fails_the_crc():
    data = bytearray(encode(1, 1, PUT, USER, "/pub/a", DIGEST, "", b"b", ext=b"abc"))
    bad = bytearray(data)
    bad[14] = 2  # ext_len one short: lengths no longer add up
    with pytest.raises(BadRecord, match="field lengths"):
        check(bad)
    data[-1] ^= 1
    with pytest.raises(BadRecord, match="CRC"):
        check(data)
    assert not record.framing_ok(0xB3, PUT, 1, 0, 0, 0, HEADER_SIZE + 1)


def test_log_appends_v2_and_every_reader_returns_the_ext(open_log, user):
    log = open_log()
    a = log.append(PUT, user, "/pub/a", b"", digest=DIGEST, ext=b"one")  # digest kept with no value
    b = log.append(PUT, user, "/pub/b", b"plain")
    c = log.append(GAP, user, "/", ext=b"gap!")
    d = log.append(PUT, user, "/pub/big", b"x" * 5000, digest=DIGEST, ext=b"big")  # the large-record path
    log.flush()
    assert a.ext == b"one" and bytes(a.digest) == DIGEST and a.size == 0
    got = list(log.read_from(1))
    assert [bytes(r.ext) for r in got] == [b"one", b"", b"gap!", b"big"]
    assert [r.kind for r in got] == [PUT, PUT, GAP, PUT]
    assert bytes(got[0].digest) == DIGEST and bytes(got[3].value) == b"x" * 5000
    assert bytes(log.read_at(d.loc).ext) == b"big" and bytes(log.read_at(b.loc).ext) == b""
    assert bytes(log.value_at(d.loc)) == b"x" * 5000
    raw = b"".join(bytes(v) for v in log.raw_segments())
    assert [bytes(r.ext) for r in decode_records(raw, verify=True)] == [b"one", b"", b"gap!", b"big"]
    assert c.seq == 3


def test_log_reopen_recovers_v2_records_and_truncates_a_torn_v2_tail(open_log, logdir, user):
    log = open_log()
    for i in range(5):
        log.append(PUT, user, f"/pub/{i}", b"v", digest=DIGEST, ext=b"e%d" % i)
    log.close()
    seg = os.path.join(logdir, sorted(f for f in os.listdir(logdir) if f.endswith(".seg"))[-1])
    rec_len = HEADER_SIZE + len("/pub/0") + 1 + 2
    with open(seg, "r+b") as fh:  # tear the last record inside its ext block
        fh.seek(4 * rec_len + rec_len - 1)
        fh.write(b"\xff")
    log = open_log()
    assert log.stats.truncated_records_total == 1
    assert [bytes(r.ext) for r in log.read_from(1)] == [b"e0", b"e1", b"e2", b"e3"]
    nxt = log.append(GAP, user, "/", ext=b"after")
    log.flush()
    assert nxt.seq == 6  # the lost seq 5 is never reused (meta.json)
    assert [r.seq for r in log.read_from(1)] == [1, 2, 3, 4, 6]


def test_retention_compaction_keeps_live_v2_records_with_their_ext(open_log, user):
    log = open_log(segment_bytes=4096)
    for i in range(200):
        log.append(PUT, user, f"/pub/{i}", b"v" * 20, digest=DIGEST, ext=b"x%03d" % i)
    log.flush()
    keep = {7}
    log.apply_retention(max_bytes=1, is_live=lambda r: r.seq in keep)
    segs = log.raw_segments()
    first = next(decode_records(segs[0], verify=True))
    assert first.seq == 7 and bytes(first.ext) == b"x006"


def test_damage_among_v2_records_is_found_and_counted_like_among_v1_records(open_log, logdir, user):
    from engine.errors import DamagedSegment
    from engine.log import recovery
    from engine.log.store import LOC_MASK

    log = open_log(segment_bytes=1 << 20)
    recs = [log.append(PUT, user, f"/pub/k{i:03d}", b"v" * 50, digest=DIGEST, ext=b"relay-ext-%03d" % i)
            for i in range(40)]
    recs.append(log.append(GAP, user, "/", ext=b"gap"))
    log.flush()
    path = log.segments()[-1][0]
    log.close()
    os.unlink(os.path.join(logdir, "meta.json"))  # as a crash leaves it
    bad = recs[10]
    with open(path, "r+b") as fh:
        fh.seek((bad.loc & LOC_MASK) + 40)
        fh.write(b"\xde\xad\xbe\xef")
    with pytest.raises(DamagedSegment) as info:
        open_log()
    assert info.value.lost == (bad.seq, bad.seq) and info.value.valid_after == 41 - bad.seq
    data = open(path, "rb").read()
    walk = recovery.walk(data, len(data.rstrip(b"\0")), last_seq=0, contiguous=True)
    assert [s.lost for s in walk.spans] == [(bad.seq, bad.seq)] and walk.last_seq == 41
