"""Shutdown on a full disk (issue 21, item 10): Log.close never raises for records that are already durable, and
`homestream serve` stopped with SIGTERM on a full disk exits 0 with every acknowledged write intact."""

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

import engine.log.segment as segment
from engine.log.record import PUT
from engine.log.store import Log

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fill(log, user, n, size=100, prefix="k"):
    recs = [log.append(PUT, user, f"/pub/{prefix}{i}", bytes([i % 256]) * size) for i in range(n)]
    log.flush()
    return recs


class FullDisk:
    """segment.py's view of os with write/ftruncate failing with ENOSPC."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.calls.append("write")
        raise OSError(errno.ENOSPC, "No space left on device")

    def ftruncate(self, fd, length):
        self.calls.append("ftruncate")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_close_on_a_full_disk_does_not_raise_and_keeps_every_record(open_log, logdir, user, monkeypatch, caplog):
    log = open_log()
    recs = fill(log, user, 30)
    full = FullDisk()
    monkeypatch.setattr(segment, "os", full)
    with caplog.at_level(logging.WARNING, logger="homestream.log"):
        log.close()  # meta.json cannot be written: a warning, not LogFull
    assert "write" in full.calls and log.closed
    assert any("meta.json not updated" in m for m in caplog.messages)
    monkeypatch.undo()
    log = open_log()
    assert [(r.seq, bytes(r.value)) for r in log.read_from(1)] == [(r.seq, bytes(r.value)) for r in recs]
    assert log.append(PUT, user, "/pub/next", b"n").seq == 31


def test_a_roll_and_close_on_a_full_disk_keep_every_record(open_log, logdir, user, monkeypatch):
    log = open_log(segment_bytes=4096)
    fill(log, user, 10)
    full = FullDisk()
    monkeypatch.setattr(segment, "os", full)
    recs = fill(log, user, 40, prefix="r")  # rolls: each seal's cut (ftruncate) fails, the seal stands
    log.close()
    assert "ftruncate" in full.calls
    monkeypatch.undo()
    log = open_log(segment_bytes=4096)
    assert log.last_seq == 50 and len(log.segments()) > 2
    got = {r.seq: bytes(r.value) for r in log.read_from(1)}
    assert all(got[r.seq] == bytes(r.value) for r in recs)


def _wait_port(proc, port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not start listening")


def test_serve_stopped_on_a_full_disk_exits_0_with_every_write_intact(tmp_path, alice):
    from e2e.harness import free_port

    data = tmp_path / "data"
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "enospc_serve.py"), "--data", str(data),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_port(proc, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(20):
                target = f"/{alice.user}/pub/f{i}"
                body = f"value {i}".encode()
                r = client.put(target, content=body, headers={"authorization": alice.auth("PUT", target, body)})
                assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "meta.json not updated" in out and "Traceback" not in out
    assert out.count("cannot write highwater.json") == 1  # told once, not at every commit
    with Log.open(str(data)) as log:
        values = {r.path: bytes(r.value) for r in log.read_from(1)}
    assert values == {f"/pub/f{i}": f"value {i}".encode() for i in range(20)}
