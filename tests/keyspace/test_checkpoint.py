"""The key-index checkpoint (engine/keyspace/checkpoint.py): used when it checks out, ignored otherwise."""

import logging
import os
import shutil

from hypothesis import given, settings, strategies as st

from engine.keyspace import Keyspace
from engine.keyspace.checkpoint import FILE_NAME, LOG_ID_NAME


def _state(ks):
    return {(u, p): (ks.get(u, p).seq, ks.read_value(ks.get(u, p)))
            for u in ks.users() for p in ks.list(u, "/", limit=10 ** 6)}


def _fill(ks, u, n, keys=50, tag=b"v"):
    for i in range(n):
        ks.put(u, f"/pub/k{i % keys}", tag * (1 + i % 40))


def _open(d, **kw):
    kw.setdefault("segment_bytes", 8192)
    kw.setdefault("fsync", "never")
    return Keyspace.open(d, **kw)


def _full(d):
    ks = _open(d, use_checkpoint=False)
    try:
        return _state(ks)
    finally:
        ks.close()


def test_checkpoint_older_than_the_log_is_used_and_the_records_after_it_applied(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = _open(d)
    u = users[0]
    _fill(ks, u, 400)
    info = ks.checkpoint_writer().run_sync()
    assert info["seq"] == ks.log.last_seq and info["keys"] == 50
    _fill(ks, u, 120, keys=70, tag=b"w")  # new keys and overwrites after the checkpoint
    ks.delete(u, "/pub/k3")  # a key deleted after the checkpoint
    want = _state(ks)
    ks.close()
    ks = _open(d)
    assert ks.checkpoint_used
    assert _state(ks) == want
    assert ks.get(u, "/pub/k3") is None
    ks.close()
    assert _full(d) == want


def test_checkpoint_torn_is_ignored_with_a_warning_and_the_index_rebuilt(tmp_path, users, caplog):
    d = str(tmp_path / "ks")
    ks = _open(d)
    _fill(ks, users[0], 300)
    ks.checkpoint_writer().run_sync()
    want = _state(ks)
    ks.close()
    path = os.path.join(d, FILE_NAME)
    size = os.path.getsize(path)
    for damage in ("truncate", "flip"):
        if damage == "truncate":
            with open(path, "r+b") as fh:
                fh.truncate(size // 2)
        else:
            data = bytearray(open(path + ".orig", "rb").read())
            data[len(data) // 2] ^= 0x01
            open(path, "wb").write(data)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="homestream.checkpoint"):
            ks = _open(d)
        assert not ks.checkpoint_used
        assert _state(ks) == want
        assert any("ignored" in r.getMessage() and ("torn" in r.getMessage() or "checksum" in r.getMessage())
                   for r in caplog.records)
        ks.checkpoint_writer().run_sync()
        ks.close()
        shutil.copy(path, path + ".orig")


def test_checkpoint_of_another_log_is_ignored(tmp_path, users, caplog):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ka, kb = _open(a), _open(b)
    _fill(ka, users[0], 200)
    _fill(kb, users[0], 200)  # the same writes: only the log id tells them apart
    ka.checkpoint_writer().run_sync()
    kb.checkpoint_writer().run_sync()
    kb.put(users[1], "/pub/only-b", b"b")
    want = _state(kb)
    ka.close()
    kb.close()
    shutil.copy(os.path.join(a, FILE_NAME), os.path.join(b, FILE_NAME))
    with caplog.at_level(logging.WARNING, logger="homestream.checkpoint"):
        kb = _open(b)
    assert not kb.checkpoint_used
    assert any("another log" in r.getMessage() for r in caplog.records)
    assert _state(kb) == want
    kb.close()


def test_checkpoint_is_ignored_when_a_segment_it_names_changed_or_went(tmp_path, users, caplog):
    d = str(tmp_path / "ks")
    ks = _open(d)
    _fill(ks, users[0], 400)
    ks.checkpoint_writer().run_sync()
    _fill(ks, users[0], 100)
    ks.apply_retention(max_bytes=1)  # rewrites and removes segments the checkpoint names
    want = _state(ks)
    ks.close()
    with caplog.at_level(logging.WARNING, logger="homestream.checkpoint"):
        ks = _open(d)
    assert not ks.checkpoint_used
    assert _state(ks) == want
    ks.close()


def test_checkpoint_whose_last_record_was_lost_is_ignored(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = _open(d, segment_bytes=1 << 20)
    _fill(ks, users[0], 100)
    ks.checkpoint_writer().run_sync()
    ks.close()
    # a crash lost the tail: the record the checkpoint names as its last one is torn
    seg = sorted(f for f in os.listdir(d) if f.endswith(".seg"))[-1]
    with open(os.path.join(d, seg), "r+b") as fh:
        data = fh.read()
        end = len(data.rstrip(b"\0"))
        fh.seek(end - 5)
        fh.write(b"\0" * 5)
    ks = _open(d, segment_bytes=1 << 20)
    assert not ks.checkpoint_used
    assert max(seq for seq, _v in _state(ks).values()) == 99  # the lost record is in no index
    ks.close()


def test_checkpoint_taken_while_writes_run_between_its_steps_equals_a_full_rebuild(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = _open(d)
    u = users[0]
    _fill(ks, u, 300)
    w = ks.checkpoint_writer()
    gen = w._steps()
    value = None
    n = 0
    while True:
        try:
            step = gen.send(value)
        except StopIteration:
            break
        n += 1
        ks.put(u, f"/pub/k{n % 60}", b"during" * n)  # writes between every step, also between read and write
        if n % 3 == 0:
            ks.delete(u, f"/pub/k{(n + 7) % 60}")
        value = step() if step is not None else None
    ks.put(u, "/pub/late", b"after")
    want = _state(ks)
    ks.close()
    ks = _open(d)
    assert ks.checkpoint_used
    assert _state(ks) == want
    ks.close()


ops = st.lists(st.tuples(st.sampled_from(["put", "put", "del"]), st.integers(0, 1), st.integers(0, 15),
                         st.integers(1, 300)), min_size=1, max_size=120)


@settings(max_examples=25, deadline=None)
@given(before=ops, after=ops)
def test_checkpointed_open_gives_the_same_index_as_a_full_rebuild(tmp_path_factory, before, after):
    from engine.names import encode_user
    us = [encode_user(bytes([i + 1]) * 32) for i in range(2)]
    d = str(tmp_path_factory.mktemp("prop") / "ks")
    ks = _open(d, segment_bytes=4096)

    def apply(seq):
        for op, ui, k, size in seq:
            if op == "put":
                ks.put(us[ui], f"/pub/k{k}", bytes([k]) * size)
            else:
                ks.delete(us[ui], f"/pub/k{k}")

    apply(before)
    ks.checkpoint_writer().run_sync()
    apply(after)
    ks.close()
    ks = _open(d, segment_bytes=4096)
    got = _state(ks)
    used = ks.checkpoint_used
    ks.close()
    assert used
    assert got == _full(d)


def test_checkpoint_log_id_is_kept_in_the_directory(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = _open(d)
    ks.put(users[0], "/pub/a", b"a")
    ks.checkpoint_writer().run_sync()
    ks.close()
    first = open(os.path.join(d, LOG_ID_NAME)).read()
    ks = _open(d)
    ks.checkpoint_writer().run_sync()
    ks.close()
    assert open(os.path.join(d, LOG_ID_NAME)).read() == first


def test_checkpoint_in_a_fresh_process_keeps_its_segment_ids_and_loads_locations_as_they_are(tmp_path, users):
    import json
    import subprocess
    import sys
    d = str(tmp_path / "ks")
    ks = _open(d)
    _fill(ks, users[0], 300)
    ks.checkpoint_writer().run_sync()
    ks.put(users[0], "/pub/after", b"a")
    want = {f"{p}": v.hex() for (_u, p), (_s, v) in _state(ks).items()}
    ks.close()
    code = ("import json,sys;from engine.keyspace import Keyspace;from engine.keyspace import checkpoint as c;"
            "import marshal;d=sys.argv[1];"
            "h=c._parse(open(d+'/checkpoint.bin','rb').read())[0];"
            "ks=Keyspace.open(d,segment_bytes=8192,fsync='never');u=ks.users()[0];"
            "print(json.dumps({'used':ks.checkpoint_used,'adopted':[s.id for s in ks.log._segments][:len(h['ids'])]"
            "==h['ids'],'state':{p:ks.read_value(ks.get(u,p)).hex() for p in ks.list(u,'/',limit=10**6)}}));ks.close()")
    out = json.loads(subprocess.run([sys.executable, "-c", code, d], check=True, capture_output=True,
                                    text=True).stdout)
    assert out["used"] and out["adopted"]
    assert out["state"] == want
