"""Crash safety: a writer subprocess is SIGKILLed at random moments; every acknowledged append must survive with
its seq, nothing half-visible, seqs strictly increasing across restarts (fsync=always and batch)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from engine.log.record import DEL, PUT
from engine.log.store import Log

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _round(directory, mode, round_no, user, rnd, acked):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_writer.py"), directory, mode,
                             str(round_no), user], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = b""  # the writer opened the log (recovery done); read unbuffered: communicate() reads the fd
    while not first.endswith(b"\n"):
        ch = os.read(proc.stdout.fileno(), 1)
        if not ch:
            break
        first += ch
    assert first.startswith(b"open "), proc.stderr.read()
    time.sleep(rnd.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    lines = out.decode().splitlines()
    if lines and not out.endswith(b"\n"):
        lines.pop()  # a line cut by the kill was not fully acknowledged to us
    for line in lines:
        seq, path, value = line.split(" ")
        acked[int(seq)] = (path, value)
    return len(lines)


def _check(directory, acked, prev_last):
    log = Log.open(directory, segment_bytes=64 * 1024)  # open verifies every CRC; torn tails are truncated
    try:
        recs = list(log.read_from(1))
        seqs = [r.seq for r in recs]
        assert seqs == sorted(set(seqs)), "seqs must be strictly increasing"
        assert log.last_seq >= max(acked, default=0)
        assert log.last_seq >= prev_last or not acked
        by_seq = {r.seq: r for r in recs}
        for seq, (path, value) in acked.items():
            rec = by_seq.get(seq)
            assert rec is not None, f"acknowledged seq {seq} lost"
            assert rec.path == path
            if value == "-":
                assert rec.kind == DEL
            else:
                assert rec.kind == PUT and bytes(rec.value).hex() == value
        return log.last_seq
    finally:
        log.close()


def _crash_rounds(tmp_path, mode, rounds, user):
    rnd = random.Random(1234 + rounds)
    directory = str(tmp_path / f"crash-{mode}")
    acked: dict[int, tuple[str, str]] = {}
    last = 0
    total = 0
    for r in range(rounds):
        total += _round(directory, mode, r, user, rnd, acked)
        last = _check(directory, acked, last)
    assert total > 0, "the writer never acknowledged anything"


@pytest.mark.parametrize("mode", ["always", "batch"])
def test_crash_sigkill_keeps_every_acknowledged_append(tmp_path, mode, user):
    _crash_rounds(tmp_path, mode, 5, user)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["always", "batch"])
def test_crash_sigkill_keeps_every_acknowledged_append_50_rounds(tmp_path, mode, user):
    _crash_rounds(tmp_path, mode, 50, user)
