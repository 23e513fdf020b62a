"""`homestream repair` (issue 21, item 9): it reports exactly what it drops, moves damaged files aside (never
deletes them), keeps every valid record with its seq, never lets a seq be reused, and the server then starts and
serves the records; --dry-run changes nothing; an interrupted repair is finished by a second one."""

import errno
import json
import os

import httpx
import pytest

from engine.cli import main
from engine.errors import CorruptLog, DamagedSegment, MissingSegments
from engine.log import repair
from engine.log.record import HEADER_SIZE, PUT
from engine.log.store import LOC_MASK, Log
from engine.names import parse_resume_point


def fill(log, user, n, size=100):
    recs = [log.append(PUT, user, f"/pub/k{i:03d}", bytes([i % 256]) * size) for i in range(n)]
    log.flush()
    return recs


def offset(rec):
    return rec.loc & LOC_MASK


def flip(path, off):
    with open(path, "r+b") as fh:
        fh.seek(off)
        b = fh.read(1)
        fh.seek(off)
        fh.write(bytes([b[0] ^ 0xFF]))


def damaged_log(directory, user, n=126, bad=50, segment_bytes=1 << 20):
    """A log of `n` records, closed as by a crash, with one flipped byte in record `bad` (1-based seq)."""
    log = Log.open(directory, segment_bytes=segment_bytes)
    recs = fill(log, user, n)
    path = log.segments()[-1][0]
    log.close()
    os.unlink(os.path.join(directory, "meta.json"))
    flip(path, offset(recs[bad - 1]) + HEADER_SIZE + 3)
    return recs, path


def run_repair(capsys, directory, *extra):
    rc = main(["repair", "--data", str(directory), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_repair_keeps_every_valid_record_and_then_the_server_starts_and_serves_them(tmp_path, capsys, alice):
    from e2e.harness import ThreadServer

    data = tmp_path / "data"
    recs, path = damaged_log(str(data), alice.user, bad=50)
    original = open(path, "rb").read()
    with pytest.raises(RuntimeError, match="DamagedSegment"):
        ThreadServer(data).start()
    rc, out, err = run_repair(capsys, data)
    assert rc == 0, err
    name = os.path.basename(path)
    nbytes = offset(recs[50]) - offset(recs[49])
    assert f"damaged  {name} at offset {offset(recs[49])} (CRC mismatch): drops {nbytes} bytes, 1 record(s), seq 50" \
        in out
    assert "keeps 125 record(s); drops 1 record(s)" in out and "new records start at seq 127" in out
    aside = [d for d in os.listdir(data) if d.startswith("damaged-")]
    assert len(aside) == 1 and open(data / aside[0] / name, "rb").read() == original  # moved, not deleted
    assert "scanning 1/1" in err and "Traceback" not in err
    srv = ThreadServer(data).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for rec in recs:
                r = client.get(f"/{alice.user}{rec.path}")
                if rec.seq == 50:
                    assert r.status_code == 404
                else:
                    assert r.status_code == 200 and r.content == bytes(rec.value), rec.seq
            target = f"/{alice.user}/pub/after"
            r = client.put(target, content=b"new", headers={"authorization": alice.auth("PUT", target, b"new")})
            assert r.status_code == 201 and parse_resume_point(r.headers["event-id"]) == 127
    finally:
        srv.stop()
    assert run_repair(capsys, data)[1].endswith("nothing to repair: the log opens as it is\n")


def test_repair_dry_run_reports_changes_nothing_and_exits_3(tmp_path, capsys, user):
    data = tmp_path / "data"
    _recs, _path = damaged_log(str(data), user)
    before = {n: open(data / n, "rb").read() for n in os.listdir(data)}
    rc, out, _err = run_repair(capsys, data, "--dry-run")
    assert rc == 3 and "dry run: nothing was changed" in out and "drops" in out
    assert {n: open(data / n, "rb").read() for n in os.listdir(data)} == before
    with pytest.raises(DamagedSegment):
        Log.open(str(data))


def test_repair_of_a_bad_first_length_drops_exactly_one_record(tmp_path, capsys, user):
    data = str(tmp_path / "data")
    log = Log.open(data)
    recs = fill(log, user, 57)
    path = log.segments()[-1][0]
    log.close()
    with open(path, "r+b") as fh:
        fh.write((HEADER_SIZE + 1).to_bytes(4, "little"))
    plan = repair.analyse(data)
    assert [(f.kind, f.offset, f.nbytes, f.records, f.exact, f.seqs) for f in plan.findings] == \
        [("damaged", 0, offset(recs[1]), 1, True, (1, 1))]
    assert (plan.kept_records, plan.dropped_records, plan.next_seq) == (56, 1, 58)
    rc, _out, _err = run_repair(capsys, data)
    assert rc == 0
    with Log.open(data) as log:
        assert [(r.seq, bytes(r.value)) for r in log.read_from(1)] == [(r.seq, bytes(r.value)) for r in recs[1:]]
        assert log.append(PUT, user, "/pub/n", b"n").seq == 58


def test_repair_after_the_newest_segment_and_meta_json_are_lost_never_reuses_a_seq(tmp_path, capsys, user):
    data = str(tmp_path / "data")
    log = Log.open(data, segment_bytes=4096)
    recs = fill(log, user, 60)
    segs = log.segments()
    log.close()
    os.unlink(segs[-1][0])
    os.unlink(os.path.join(data, "meta.json"))
    with pytest.raises(MissingSegments):
        Log.open(data, segment_bytes=4096)
    bound = json.load(open(os.path.join(data, "highwater.json")))["bound"]
    assert bound == segs[-1][1] + 4096 // HEADER_SIZE  # no record of a 4096-byte segment can reach it
    rc, out, _err = run_repair(capsys, data)
    assert rc == 0
    kept = segs[-2][2]
    assert f"newest   seqs {kept + 1}.." in out and f"from seq {segs[-1][1]}" in out
    with Log.open(data, segment_bytes=4096) as log:
        assert [r.seq for r in log.read_from(1)] == list(range(1, kept + 1))
        new = log.append(PUT, user, "/pub/n", b"n").seq
    assert new == bound > recs[-1].seq  # every acknowledged seq, the lost ones too, stays unique


def test_repair_accepts_a_missing_middle_segment_and_names_its_seqs(tmp_path, capsys, user):
    data = str(tmp_path / "data")
    log = Log.open(data, segment_bytes=4096)
    fill(log, user, 60)
    segs = log.segments()
    log.close()
    os.unlink(segs[1][0])
    rc, out, _err = run_repair(capsys, data)
    assert rc == 0
    assert f"missing  seqs {segs[1][1]}..{segs[2][1] - 1}: no segment holds them" in out
    with Log.open(data, segment_bytes=4096) as log:
        seqs = [r.seq for r in log.read_from(1)]
        assert seqs == [s for s in range(1, 61) if not segs[1][1] <= s < segs[2][1]]
        assert log.append(PUT, user, "/pub/n", b"n").seq == 61


def test_repair_moves_an_empty_segment_file_aside(tmp_path, capsys, user):
    data = str(tmp_path / "data")
    log = Log.open(data, segment_bytes=4096)
    fill(log, user, 60)
    segs = log.segments()
    log.close()
    open(segs[-1][0], "wb").close()  # the newest segment lost its bytes
    with pytest.raises(MissingSegments):
        Log.open(data, segment_bytes=4096)
    rc, out, _err = run_repair(capsys, data)
    assert rc == 0 and f"empty    {os.path.basename(segs[-1][0])}" in out
    aside = [d for d in os.listdir(data) if d.startswith("damaged-")]
    assert os.path.exists(os.path.join(data, aside[0], os.path.basename(segs[-1][0])))
    with Log.open(data, segment_bytes=4096) as log:
        assert log.append(PUT, user, "/pub/n", b"n").seq > 60


def test_repair_interrupted_leaves_a_log_that_refuses_and_a_second_repair_finishes(tmp_path, capsys, user,
                                                                                   monkeypatch):
    data = str(tmp_path / "data")
    recs, _path = damaged_log(data, user, n=40, bad=20)
    real = repair._seg.write_file_atomic
    calls = []

    def crash_on_second(path, chunks, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.EIO, "simulated crash")
        return real(path, chunks, **kw)

    monkeypatch.setattr(repair._seg, "write_file_atomic", crash_on_second)
    rc, _out, err = run_repair(capsys, data)
    assert rc == 1 and "simulated crash" in err and "Traceback" not in err
    monkeypatch.setattr(repair._seg, "write_file_atomic", real)
    with pytest.raises(CorruptLog):  # the copy of the later records overlaps the original: refused, not silent
        Log.open(data)
    rc, out, err = run_repair(capsys, data)
    assert rc == 0, err
    with Log.open(data) as log:
        assert [r.seq for r in log.read_from(1)] == [r.seq for r in recs if r.seq != 20]


def test_repair_refuses_while_the_log_is_open_with_one_line(tmp_path, capsys, user):
    data = str(tmp_path / "data")
    with Log.open(data) as log:
        fill(log, user, 3)
        rc, out, err = run_repair(capsys, data)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "open in another process" in err and "stop the server first" in err
    rc, _out, err = run_repair(capsys, tmp_path / "nowhere")
    assert rc == 1 and "is not a directory" in err


def test_serve_on_a_damaged_log_exits_1_with_one_line_naming_file_offset_and_count(tmp_path, user):
    import subprocess
    import sys

    from e2e.harness import free_port

    data = tmp_path / "data"
    recs, path = damaged_log(str(data), user, n=30, bad=10)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--data", str(data), "--port",
                           str(free_port())], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1
    assert f"{path} at offset {offset(recs[9])}" in lines[0] and "20 valid record(s)" in lines[0]
    assert "homestream repair --data" in lines[0]
