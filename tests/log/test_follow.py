"""Log.append_framed (a replica appends the origin's record bytes) and Log.truncate_after (a deposed origin
drops what the cluster never took)."""

import pytest

from engine.log.record import DEL, PUT, BadRecord, encode
from engine.log.store import Log


def framed(origin: Log, seq: int) -> bytes:
    return b"".join(bytes(v) for _f, _l, v in origin.read_raw(seq, until=seq))


def test_append_framed_copies_the_origins_records_byte_for_byte(open_log, tmp_path, user):
    origin = open_log(str(tmp_path / "origin"))
    for i in range(300):  # past one 64 KiB segment
        origin.append(PUT, user, f"/pub/k{i}", b"v" * (i % 500))
    origin.append(DEL, user, "/pub/k1")
    origin.flush()
    replica = open_log(str(tmp_path / "replica"))
    for seq in range(1, origin.last_seq + 1):
        rec = replica.append_framed(framed(origin, seq))
        assert rec.seq == seq and rec.loc is not None
    replica.flush()
    assert replica.last_seq == origin.last_seq == 301 and replica.segment_count > 1
    assert [r for r in replica.read_from(1)] == [r for r in origin.read_from(1)]
    ours = b"".join(bytes(v) for _f, _l, v in replica.read_raw(1))
    assert ours == b"".join(bytes(v) for _f, _l, v in origin.read_raw(1))


def test_append_framed_refuses_a_wrong_seq_a_bad_crc_or_trailing_bytes(open_log, user):
    log = open_log()
    good = encode(1, 1000, PUT, user, "/pub/a", b"\0" * 32, "text/plain", b"hi")
    with pytest.raises(ValueError, match="seq 2 where 1"):
        log.append_framed(encode(2, 1000, PUT, user, "/pub/a", b"\0" * 32, "", b"hi"))
    with pytest.raises(BadRecord):
        log.append_framed(good[:-1] + b"X")
    with pytest.raises(ValueError, match="after the record"):
        log.append_framed(good + b"\0")
    assert log.last_seq == 0
    assert log.append_framed(good).seq == 1


def test_truncate_after_drops_the_tail_across_segments_and_survives_reopening(open_log, logdir, user):
    log = open_log()
    for i in range(400):
        log.append(PUT, user, f"/pub/k{i}", b"x" * 400)
    log.flush()
    assert log.segment_count > 2
    keep = 123
    assert log.truncate_after(keep) == 400 - keep
    assert log.last_seq == keep == log.durable_seq
    assert log.append(PUT, user, "/pub/new", b"n").seq == keep + 1  # seqs go on from the kept end
    log.close()
    again = open_log(logdir)
    assert again.last_seq == keep + 1
    assert [r.path for r in again.read_from(keep)] == [f"/pub/k{keep - 1}", "/pub/new"]
    assert again.truncate_after(again.last_seq) == 0


def test_truncate_after_to_nothing_leaves_an_empty_log(open_log, logdir, user):
    log = open_log()
    for i in range(5):
        log.append(PUT, user, f"/pub/k{i}", b"x")
    log.flush()
    assert log.truncate_after(0) == 5
    log.close()
    again = open_log(logdir)
    assert again.last_seq == 0 and list(again.read_from(1)) == []


def test_snapshot_files_copied_up_to_a_seq_open_as_that_log(open_log, tmp_path, user):
    from engine.log import segment as _seg

    log = open_log(str(tmp_path / "src"))
    for i in range(250):
        log.append(PUT, user, f"/pub/k{i}", b"y" * 300)
    log.flush()
    upto = 200
    files = log.snapshot_files(upto)
    assert len(files) > 1 and files[0][0].endswith(".seg")
    dst = tmp_path / "dst"
    dst.mkdir()
    for name, n in files:
        _seg.write_file_atomic(str(dst / name), [log.snapshot_bytes(name, n)])
    _seg.write_meta(str(dst), {"first_seq": log.first_seq, "next_seq": upto + 1})
    copy = open_log(str(dst))
    assert copy.last_seq == upto
    assert list(copy.read_from(1)) == list(log.read_from(1, until=upto))
    assert copy.append_framed(framed(log, upto + 1)).seq == upto + 1  # and it follows on from there
    with pytest.raises(ValueError):
        log.snapshot_bytes(files[-1][0], 1 << 30)
    with pytest.raises(KeyError):
        log.snapshot_bytes("nosuch.seg", 1)
