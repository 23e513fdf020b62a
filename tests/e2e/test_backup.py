"""Backups of a running server (--backup-dir, --backup-interval, SIGUSR1) and `homestream backup`."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import httpx

from engine.keyspace import Keyspace
from engine.log import backup
from engine.log.store import Log

from .harness import ProcessServer


def _open_quiet(directory, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="homestream"):
        log = Log.open(directory)
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return log, noisy


def test_server_killed_during_periodic_backups_leaves_each_complete_and_consistent_or_partial(tmp_path, alice,
                                                                                              caplog):
    data, folder = tmp_path / "data", tmp_path / "backups"
    srv = ProcessServer(data, extra=["--open-writes", "--segment-bytes", "65536", "--backup-dir", str(folder),
                                     "--backup-interval", "0.2", "--backup-keep", "50"]).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            deadline = time.monotonic() + 3
            i = 0
            while time.monotonic() < deadline:
                assert c.put(f"/{alice.user}/pub/k{i % 200}", content=b"%d" % i * 50).status_code in (201, 204)
                i += 1
        srv.proc.send_signal(signal.SIGKILL)  # while it writes and backs up
        srv.proc.wait(10)
    finally:
        srv.kill()
    names = os.listdir(folder)
    done = backup.finished(str(folder))
    assert [n for n in done if json.load(open(folder / n / backup.MANIFEST))["seq"] > 100], names
    assert all(n in done or n.endswith(".partial") for n in names)
    main, _noisy = _open_quiet(str(data), caplog)  # (the killed server's log may have a torn tail: allowed)
    history = {r.seq: bytes(r.value) for r in main.read_from(1)}
    main.close()
    for name in done:
        manifest = json.load(open(folder / name / backup.MANIFEST))
        log, noisy = _open_quiet(str(folder / name), caplog)
        try:
            assert noisy == [], (name, noisy)  # a finished backup opens with no recovery warning
            got = [(r.seq, bytes(r.value)) for r in log.read_from(1)]
            assert log.last_seq == manifest["seq"]
            assert [seq for seq, _v in got] == list(range(log.first_seq, manifest["seq"] + 1))
            assert all(history[seq] == value for seq, value in got)  # every record as in the server's log
        finally:
            log.close()


def test_sigusr1_takes_a_backup_now(tmp_path, alice):
    data, folder = tmp_path / "data", tmp_path / "backups"
    srv = ProcessServer(data, extra=["--open-writes", "--backup-dir", str(folder)]).start()
    try:
        assert httpx.put(f"{srv.url}/{alice.user}/pub/a", content=b"A").status_code == 201
        srv.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not backup.finished(str(folder)) and time.monotonic() < deadline:
            time.sleep(0.05)
        done = backup.finished(str(folder))
        assert len(done) == 1
        ks = Keyspace.open(str(folder / done[0]))
        assert ks.read_value(ks.get(alice.user, "/pub/a")) == b"A"
        ks.close()
    finally:
        srv.terminate()


def test_backup_command_copies_a_stopped_servers_log_and_refuses_a_running_one(tmp_path, alice):
    data = tmp_path / "data"
    srv = ProcessServer(data, extra=["--open-writes"]).start()
    cmd = [sys.executable, "-m", "engine.cli", "backup"]
    try:
        assert httpx.put(f"{srv.url}/{alice.user}/pub/a", content=b"A").status_code == 201
        busy = subprocess.run([*cmd, str(tmp_path / "b1"), "--data", str(data)], capture_output=True, text=True)
        assert busy.returncode == 1 and "USR1" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "b1").exists()
    finally:
        srv.terminate()
    ok = subprocess.run([*cmd, str(tmp_path / "b2"), "--data", str(data)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["complete"] is True
    ks = Keyspace.open(str(tmp_path / "b2"))
    assert ks.read_value(ks.get(alice.user, "/pub/a")) == b"A"
    ks.close()
