"""Online backup of the log (engine/log/backup.py): complete and consistent, or clearly unfinished."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.keyspace import Keyspace
from engine.log import backup
from engine.log.record import PUT
from engine.log.store import Log

HERE = os.path.dirname(__file__)


def _records(directory):
    log = Log.open(directory)
    try:
        return [(r.seq, r.path, bytes(r.value)) for r in log.read_from(1)], log.first_seq, log.last_seq
    finally:
        log.close()


def test_backup_taken_between_writes_holds_exactly_the_records_up_to_the_durable_seq(tmp_path, user, caplog):
    src, dest = str(tmp_path / "log"), str(tmp_path / "bk")
    log = Log.open(src, segment_bytes=8192, fsync="batch")
    for i in range(300):
        log.append(PUT, user, f"/pub/k{i % 40}", b"v%d" % i * 10)
    log.flush()
    plan = backup.Plan(log)  # the owner's step
    for i in range(50):  # writes made while the worker copies: not in the backup
        log.append(PUT, user, f"/pub/late{i}", b"late")
    manifest = backup.take(plan, dest)
    log.close()
    assert manifest["complete"] and manifest["seq"] == 300 and manifest["linked"] >= 1
    assert not os.path.exists(dest + ".partial")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="homestream"):
        got, first, last = _records(dest)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no recovery of any kind
    want, _first, _last = _records(src)
    assert last == 300 and got == want[:300]


def test_backup_of_a_compacted_log_keeps_the_live_keys_and_opens_as_a_log(tmp_path, user, caplog):
    src, dest = str(tmp_path / "log"), str(tmp_path / "bk")
    ks = Keyspace.open(src, segment_bytes=8192, fsync="never")
    ks.put(user, "/pub/cold", b"cold" * 50)
    for i in range(300):
        ks.put(user, f"/pub/hot{i % 10}", b"h%d" % i * 20)
    ks.apply_retention(max_bytes=20000)
    want = {p: ks.read_value(ks.get(user, p)) for p in ks.list(user, "/", limit=100)}
    backup.backup_sync(ks.log, dest)
    ks.close()
    with caplog.at_level(logging.INFO, logger="homestream"):
        kb = Keyspace.open(dest)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert {p: kb.read_value(kb.get(user, p)) for p in kb.list(user, "/", limit=100)} == want
    rec = kb.put(user, "/pub/new", b"n")[0]  # and it takes writes, past the source's seqs
    assert rec.seq == kb.log.last_seq and rec.seq > 301
    kb.close()


def test_backup_killed_in_the_middle_leaves_only_a_partial_directory(tmp_path, user):
    src, dest = str(tmp_path / "log"), str(tmp_path / "bk")
    log = Log.open(src, segment_bytes=8192, fsync="never")
    for i in range(400):
        log.append(PUT, user, f"/pub/k{i}", b"x" * 200)
    log.close()
    code = ("import sys,time;from engine.log.store import Log;from engine.log import backup;"
            f"log=Log.open({src!r});"
            "backup.backup_sync(log, sys.argv[1], on_file=lambda p:(print('file',flush=True),time.sleep(0.5)))")
    proc = subprocess.Popen([sys.executable, "-c", code, dest], stdout=subprocess.PIPE, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == b"file"  # one segment is in, others are not
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.exists(dest)
    assert os.path.isdir(dest + ".partial")
    assert not os.path.exists(os.path.join(dest + ".partial", backup.MANIFEST))
    # the next backup of the same destination starts over and finishes
    log = Log.open(src)
    manifest = backup.backup_sync(log, dest)
    log.close()
    assert manifest["seq"] == 400 and not os.path.exists(dest + ".partial")
    assert _records(dest)[0] == _records(src)[0]


def test_backup_never_overwrites_an_existing_destination(tmp_path, user):
    src, dest = str(tmp_path / "log"), str(tmp_path / "bk")
    os.makedirs(dest)
    log = Log.open(src)
    log.append(PUT, user, "/pub/a", b"a")
    with pytest.raises(FileExistsError):
        backup.backup_sync(log, dest)
    log.close()


def test_backup_rotation_keeps_the_newest_k_and_removes_unfinished_ones(tmp_path, user):
    src, folder = str(tmp_path / "log"), str(tmp_path / "backups")
    os.makedirs(os.path.join(folder, "20260101T000000Z-5.partial"))
    log = Log.open(src, fsync="never")

    async def main():
        made = []
        for i in range(4):
            log.append(PUT, user, f"/pub/k{i}", b"v")
            log.flush()
            made.append((await backup.rotate_async(log, folder, keep=2))["path"])
        again = await backup.rotate_async(log, folder, keep=2)  # nothing new: no new backup
        return made, again

    made, again = asyncio.run(main())
    log.close()
    assert backup.finished(folder) == [os.path.basename(p) for p in made[-2:]]
    assert sorted(os.listdir(folder)) == sorted(backup.finished(folder))
    assert again["skipped"] and again["path"] == made[-1]


def test_backup_copies_the_state_files_it_is_given_under_their_lock(tmp_path, user):
    src, dest = str(tmp_path / "log"), str(tmp_path / "bk")
    log = Log.open(src)
    log.append(PUT, user, "/pub/a", b"a")
    with open(os.path.join(src, "users.journal"), "wb") as fh:
        fh.write(b"line one\nline two\n")
    backup.backup_sync(log, dest, extras=(("users.journal", "users.lock"), ("absent.journal", "absent.lock")))
    log.close()
    assert open(os.path.join(dest, "users.journal"), "rb").read() == b"line one\nline two\n"
    assert not os.path.exists(os.path.join(dest, "absent.journal"))
