"""store.py: append/read, roll, index rebuild, reopen, recovery, sealed corruption, retention, bad input."""

import asyncio
import errno
import logging
import os

import pytest

from engine.errors import CorruptLog, InvalidName, LogFull, ValueTooLarge
from engine.log.record import DEL, HEADER_SIZE, PUT, decode_records
from engine.log.store import Log


def fill(log, user, n, start=0, size=100):
    recs = [log.append(PUT, user, f"/pub/k{(start + i) % 50}", bytes([i % 256]) * size) for i in range(n)]
    log.flush()
    return recs


def seg_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".seg"))


def test_log_append_assigns_increasing_seqs_from_1_and_reads_them_back(open_log, user):
    log = open_log()
    assert (log.first_seq, log.last_seq, log.durable_seq) == (1, 0, 0)
    recs = fill(log, user, 10)
    assert [r.seq for r in recs] == list(range(1, 11))
    got = list(log.read_from(0))
    assert [r.seq for r in got] == list(range(1, 11))
    assert [bytes(r.value) for r in got] == [bytes(r.value) for r in recs]
    assert [r.seq for r in log.read_from(7)] == [7, 8, 9, 10]
    assert [r.seq for r in log.read_from(3, until=5)] == [3, 4, 5]


def test_log_read_from_stops_at_durable_seq(open_log, user):
    log = open_log(fsync="batch", commit_window=10.0)
    fill(log, user, 3)
    log.append(PUT, user, "/pub/late", b"x")
    assert log.last_seq == 4 and log.durable_seq == 3
    assert [r.seq for r in log.read_from(1)] == [1, 2, 3]
    log.flush()
    assert [r.seq for r in log.read_from(1)] == [1, 2, 3, 4]


def test_log_segment_roll_names_files_by_first_seq(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    fill(log, user, 100)
    files = seg_files(logdir)
    assert len(files) > 3
    assert files[0] == "00000000000000000001.seg"
    firsts = [int(f[:20]) for f in files]
    assert firsts == sorted(firsts)
    for path, first, last, size, _c in log.segments()[:-1]:
        assert os.path.getsize(path) == size  # sealed: cut to its data
    assert [r.seq for r in log.read_from(1)] == list(range(1, 101))


def test_log_record_bigger_than_a_segment_gets_its_own_segment(open_log, user):
    log = open_log(segment_bytes=4096)
    fill(log, user, 3)
    big = log.append(PUT, user, "/pub/big", b"B" * 10000)
    small = log.append(PUT, user, "/pub/small", b"s")
    log.flush()
    got = {r.seq: bytes(r.value) for r in log.read_from(1)}
    assert got[big.seq] == b"B" * 10000 and got[small.seq] == b"s"


def test_log_reopen_rebuilds_index_and_continues_seq(open_log, logdir, user):
    log = open_log(segment_bytes=8192, index_interval=4)
    fill(log, user, 200)
    log.close()
    log = open_log(index_interval=4)
    assert (log.first_seq, log.last_seq, log.durable_seq) == (1, 200, 200)
    assert [r.seq for r in log.read_from(123, until=130)] == list(range(123, 131))
    r = log.append(PUT, user, "/pub/next", b"n")
    assert r.seq == 201


def test_log_read_raw_slices_cover_the_range_in_order(open_log, user):
    log = open_log(segment_bytes=16384, index_interval=8)
    fill(log, user, 500)
    for start, until in [(1, 500), (37, 411), (499, 500), (250, 250)]:
        seqs = []
        for first, last, view in log.read_raw(start, until, chunk_bytes=2000):
            recs = list(decode_records(view, verify=True))
            assert [r.seq for r in recs] == list(range(first, last + 1))
            seqs.extend(r.seq for r in recs)
        assert seqs == list(range(start, until + 1))


def test_log_recover_truncates_torn_tail(open_log, logdir, user, caplog):
    log = open_log()
    recs = fill(log, user, 20)
    path = log.segments()[-1][0]
    end = log.segments()[-1][3]
    last_len = HEADER_SIZE + len(recs[-1].path) + 100
    log.close()
    os.unlink(os.path.join(logdir, "meta.json"))  # as after a crash: meta.json is written at close
    with open(path, "r+b") as fh:  # tear the last record: zero its last 100 bytes
        fh.seek(end - 100)
        fh.write(bytes(100))
    with caplog.at_level(logging.WARNING, logger="homestream.log"):
        log = open_log()
    assert log.last_seq == 19
    dropped = last_len - 100
    assert log.stats.truncated_bytes_total == dropped and log.stats.truncated_records_total == 1
    assert any(path in m and f"{dropped} bytes" in m for m in caplog.messages)
    assert log.append(PUT, user, "/pub/again", b"a").seq == 20
    log.flush()
    assert len(list(log.read_from(1))) == 20


def test_log_seq_is_not_reused_when_a_record_known_to_meta_is_lost(open_log, logdir, user):
    log = open_log()
    fill(log, user, 20)
    path, _f, _l, end, _c = log.segments()[-1]
    log.close()  # meta.json says next seq 21
    with open(path, "r+b") as fh:
        fh.seek(end - 10)
        fh.write(b"\xff" * 10)
    log = open_log()
    assert log.append(PUT, user, "/pub/x", b"x").seq == 21
    log.close()
    log = open_log()
    assert [r.seq for r in log.read_from(1)] == list(range(1, 20)) + [21]


def test_log_recover_truncates_garbage_after_valid_data(open_log, logdir, user, caplog):
    log = open_log()
    fill(log, user, 5)
    path, _f, _l, end, _c = log.segments()[-1]
    log.close()
    os.unlink(os.path.join(logdir, "meta.json"))
    with open(path, "r+b") as fh:
        fh.seek(end + 1000)
        fh.write(b"\xde\xad\xbe\xef" * 10)
    with caplog.at_level(logging.WARNING, logger="homestream.log"):
        log = open_log()
    assert log.last_seq == 5
    assert log.stats.truncated_bytes_total == 1040
    assert caplog.messages
    log.close()
    log = open_log()  # the tail was zeroed: nothing to truncate the second time
    assert log.stats.truncated_bytes_total == 0 and log.last_seq == 5


def test_log_corrupt_record_in_sealed_segment_is_corruptlog_with_file_and_offset(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    recs = fill(log, user, 60)
    sealed_path = log.segments()[0][0]
    log.close()
    off = HEADER_SIZE + 30  # inside the first record's value... of the second record's header region
    with open(sealed_path, "r+b") as fh:
        fh.seek(off)
        b = fh.read(1)
        fh.seek(off)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(CorruptLog) as info:
        open_log()
    assert info.value.path == sealed_path and info.value.offset == 0
    assert sealed_path in str(info.value)
    assert recs


def test_log_pending_segment_left_by_a_crash_is_removed(open_log, logdir, user):
    log = open_log()
    fill(log, user, 5)
    log.close()
    with open(os.path.join(logdir, "00000000000000000006.seg.pending"), "wb") as fh:
        fh.write(b"\x01" * 100)
    log = open_log()
    assert log.last_seq == 5
    assert not [f for f in os.listdir(logdir) if f.endswith(".pending")]


def test_log_value_too_large_invalid_names_leave_log_appendable(open_log, user):
    log = open_log(max_value_bytes=1000)
    fill(log, user, 3)
    with pytest.raises(ValueTooLarge):
        log.append(PUT, user, "/pub/big", b"x" * 1001)
    log.append(PUT, user, "/pub/edge", b"x" * 1000)
    for bad_path in ["pub/a", "/pub//a", "/pub/./a", "/pub/../a", "/a\0b", "/" + "a" * 1024, "/pub/.."]:
        with pytest.raises(InvalidName):
            log.append(PUT, user, bad_path, b"v")
    for bad_user in ["", "x" * 52, user.upper(), user[:-1]]:
        with pytest.raises(InvalidName):
            log.append(PUT, bad_user, "/pub/a", b"v")
    assert log.append(PUT, user, "/pub/.hidden", b"ok").seq == 5
    log.flush()
    assert [r.seq for r in log.read_from(1)] == [1, 2, 3, 4, 5]


def test_log_full_disk_at_allocation_is_logfull_and_log_stays_appendable(open_log, logdir, user, monkeypatch):
    log = open_log(segment_bytes=4096)
    fill(log, user, 10)
    real = os.posix_fallocate

    def enospc(fd, off, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", enospc)
    with pytest.raises(LogFull):
        for _ in range(100):
            log.append(PUT, user, "/pub/more", b"m" * 200)
    last = log.last_seq
    monkeypatch.setattr(os, "posix_fallocate", real)
    assert not [f for f in os.listdir(logdir) if f.endswith(".pending") and f[:20] != f"{last + 1:020d}"]
    r = log.append(PUT, user, "/pub/after", b"a" * 200)
    assert r.seq == last + 1
    log.flush()
    log.close()
    log = open_log()
    assert log.last_seq == last + 1
    assert [x.seq for x in log.read_from(1)] == list(range(1, last + 2))


def test_log_seq_continues_after_retention_removes_everything(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    fill(log, user, 60)
    log.append(PUT, user, "/pub/roll", b"r" * 3000)
    log.append(PUT, user, "/pub/roll2", b"r" * 3000)  # forces the previous records out of the active segment
    log.flush()
    res = log.apply_retention(max_bytes=1, is_live=lambda r: False)
    assert res["removed"] >= 1
    last = log.last_seq
    assert log.first_seq == log.segments()[0][1]
    log.close()
    log = open_log()
    assert log.append(PUT, user, "/pub/n", b"x").seq == last + 1
    assert log.first_seq > 1


def test_log_retention_keeps_live_records_with_their_seq_and_moves_first_seq(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    recs = fill(log, user, 120)
    live = {recs[3].seq, recs[40].seq}
    moved = {}
    res = log.apply_retention(max_bytes=1, is_live=lambda r: r.seq in live,
                              on_move=lambda r, loc: moved.__setitem__(r.seq, loc))
    assert res["compacted"] >= 1
    first = log.first_seq
    assert first > recs[40].seq
    assert set(moved) == live
    for seq, loc in moved.items():
        rec = log.read_at(loc)
        assert rec.seq == seq and bytes(rec.value) == bytes(recs[seq - 1].value)
    assert [r.seq for r in log.read_from(1)][0] == first  # compacted records are not stream history
    names = seg_files(logdir)
    assert names[0] == f"{recs[3].seq:020d}.seg"
    log.close()
    log = open_log()
    assert log.first_seq == first
    assert [r.seq for r in log.read_from(1)][0] == first


def test_log_retention_by_age_compacts_only_old_segments(open_log, user):
    log = open_log(segment_bytes=4096)
    for i in range(40):
        log.append(PUT, user, f"/pub/old{i}", b"o" * 100, ts=1000)
    for i in range(40):
        log.append(PUT, user, f"/pub/new{i}", b"n" * 100)
    log.flush()
    res = log.apply_retention(max_age_seconds=3600, is_live=lambda r: False)
    assert res["removed"] >= 1
    history = list(log.read_from(1))
    assert 1 < log.first_seq <= 41  # old segments went; the one holding new records stays whole
    assert [r.seq for r in history] == list(range(log.first_seq, 81))
    assert [r.seq for r in history if r.ts > 1000] == list(range(41, 81))


def test_log_compaction_leftover_named_by_old_seq_is_renamed_at_open(open_log, logdir, user):
    log = open_log(segment_bytes=4096)
    recs = fill(log, user, 60)
    log.apply_retention(max_bytes=1, is_live=lambda r: r.seq == 5)
    log.close()
    # simulate a crash between the atomic replace and the final rename: the file still has the old name
    os.rename(os.path.join(logdir, f"{5:020d}.seg"), os.path.join(logdir, f"{1:020d}.seg"))
    open(os.path.join(logdir, f"{1:020d}.seg.compact"), "wb").write(b"junk")
    log = open_log()
    assert f"{5:020d}.seg" in os.listdir(logdir) and f"{1:020d}.seg" not in os.listdir(logdir)
    assert not [f for f in os.listdir(logdir) if f.endswith(".compact")]
    assert recs


def test_log_commit_listener_sees_each_durable_record_once_in_order(open_log, user):
    log = open_log(fsync="batch", commit_window=0.001)
    seen = []
    log.add_commit_listener(lambda recs: seen.extend(r.seq for r in recs))
    for i in range(300):
        r = log.append(PUT, user, f"/pub/{i}", b"v")
        if i % 37 == 0:
            log.wait_durable_sync(r.seq)
            assert seen and seen[-1] >= r.seq
    log.flush()
    assert seen == list(range(1, 301))


@pytest.mark.parametrize("mode", ["always", "batch", "never"])
async def test_log_wait_durable_resolves_on_the_loop_and_listeners_run_there(open_log, user, mode):
    log = open_log(fsync=mode)
    loop = asyncio.get_running_loop()
    seen, threads = [], set()
    import threading

    def listener(recs):
        threads.add(threading.current_thread())
        seen.extend(r.seq for r in recs)

    log.add_commit_listener(listener)
    recs = [log.append(PUT, user, f"/pub/{i}", b"v") for i in range(50)]
    await asyncio.wait_for(log.wait_durable(recs[-1].seq), 5)
    await asyncio.sleep(0)
    assert log.durable_seq >= 50
    assert seen == list(range(1, 51))
    assert threads == {threading.current_thread()}
    await asyncio.wait_for(log.wait_durable(3), 1)  # already durable
    assert loop


async def test_log_committer_alone_commits_every_burst_whether_idle_or_busy_before(open_log, user):
    """No flush and no synchronous wait (which kick the committer themselves): each burst, after a pause that lets
    the committer go idle or straight after the last commit, is made durable by the committer's own wake-up."""
    log = open_log(fsync="batch", commit_window=0.0005)
    for burst in range(60):
        recs = [log.append(PUT, user, f"/pub/{burst}/{i}", b"v") for i in range(1 + burst % 7)]
        await asyncio.wait_for(log.wait_durable(recs[-1].seq), 2)
        if burst % 3 == 0:
            await asyncio.sleep(0.003)
    assert log.durable_seq == log.last_seq


def test_log_close_is_idempotent_and_context_manager(logdir, user):
    with Log.open(logdir) as log:
        log.append(PUT, user, "/pub/a", b"a")
    log.close()
    with Log.open(logdir) as log:
        assert log.last_seq == 1 and log.durable_seq == 1


def test_log_delete_record_has_no_value(open_log, user):
    log = open_log()
    log.append(PUT, user, "/pub/a", b"a")
    d = log.append(DEL, user, "/pub/a", b"ignored")
    log.flush()
    got = list(log.read_from(1))
    assert got[1].kind == DEL and got[1].size == 0 and d.digest == b""
