"""The retention pass of engine/log/compaction.py: heavy work off the owner's thread, writes in between its steps."""

import asyncio
import random

import pytest

from engine.keyspace import Keyspace
from engine.log.compaction import Offload


def _index(ks):
    return {(u, p): ks.read_value(ks.get(u, p)) for u in ks.users() for p in ks.list(u, "/", limit=100000)}


def _drive(rp, between):
    """Run the pass step by step like `run()` does, calling between(kind) where the loop would serve others."""
    rp.log.flush()  # the committer seals rolled segments; only sealed ones are candidates
    gen = rp.steps()
    value = None
    while True:
        try:
            step = gen.send(value)
        except StopIteration:
            return rp.result
        between("owner" if step is None else "offload")
        value = step.fn() if isinstance(step, Offload) else None
        between("after")


def test_retention_pass_with_writes_between_its_steps_keeps_the_index_equal_to_a_rebuild(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = Keyspace.open(d, segment_bytes=8192, fsync="never")
    u = users[0]
    rnd = random.Random(7)
    model = {}
    for i in range(20):  # written once: live in the oldest segments, copied forward
        ks.put(u, f"/pub/cold{i}", b"c" * 200)
        model[(u, f"/pub/cold{i}")] = b"c" * 200
    for i in range(400):
        p = f"/pub/k{rnd.randrange(60)}"
        v = f"{i}".encode() * rnd.randrange(1, 40)
        ks.put(u, p, v)
        model[(u, p)] = v
    steps = {"owner": 0, "offload": 0}

    def between(kind):
        if kind in steps:
            steps[kind] += 1
        p = f"/pub/k{rnd.randrange(60)}"
        if rnd.random() < 0.2:
            ks.delete(u, p)
            model.pop((u, p), None)
        else:
            v = rnd.randbytes(rnd.randrange(1, 300))
            ks.put(u, p, v)
            model[(u, p)] = v

    res = _drive(ks.retention_pass(max_bytes=20000), between)
    assert res["compacted"] + res["removed"] >= 1
    assert steps["owner"] >= 1 and steps["offload"] >= 2
    assert _index(ks) == model
    # a second pass drops what the first copied while writes made it dead; then a rebuild agrees
    _drive(ks.retention_pass(max_bytes=20000), between)
    assert _index(ks) == model
    ks.close()
    ks = Keyspace.open(d, segment_bytes=8192, fsync="never")
    assert _index(ks) == model
    ks.close()


def test_retention_pass_a_location_keeps_naming_its_record_until_the_old_segment_is_retired(tmp_path, users):
    ks = Keyspace.open(str(tmp_path / "ks"), segment_bytes=4096, fsync="never")
    u = users[0]
    ks.put(u, "/pub/cold", b"c" * 100)
    for i in range(80):
        ks.put(u, "/pub/hot", f"{i}".encode() * 30)
    loc = ks.get(u, "/pub/cold").loc
    seen = []

    def between(kind):
        try:
            rec = ks.log.read_at(loc)
            seen.append((rec.path, bytes(rec.value)))
        except KeyError:
            seen.append(None)

    _drive(ks.retention_pass(max_bytes=1), between)
    # the old location read the same record until it was retired, then nothing (never another record)
    assert seen[0] == ("/pub/cold", b"c" * 100)
    assert all(s in (None, ("/pub/cold", b"c" * 100)) for s in seen)
    assert seen[-1] is None
    e = ks.get(u, "/pub/cold")
    assert e.loc != loc and ks.read_value(e) == b"c" * 100
    ks.close()


def test_retention_pass_value_copied_then_deleted_during_the_pass_stays_deleted_after_the_next_pass(tmp_path, users):
    d = str(tmp_path / "ks")
    ks = Keyspace.open(d, segment_bytes=4096, fsync="never")
    u = users[0]
    ks.put(u, "/pub/x", b"old" * 30)
    for i in range(60):
        ks.put(u, f"/pub/f{i}", b"f" * 100)
    done = []

    def between(kind):
        if kind == "after" and not done and ks.get(u, "/pub/x") is not None:
            ks.delete(u, "/pub/x")  # after the pass found /pub/x live: its copy is a dead record
            done.append(1)

    _drive(ks.retention_pass(max_bytes=1), between)
    assert done and ks.get(u, "/pub/x") is None
    for i in range(60):
        ks.put(u, f"/pub/g{i}", b"g" * 100)  # pushes the tombstone out of the active segment
    ks.apply_retention(max_bytes=1)  # drops the tombstone, and the stale copy before it
    assert ks.get(u, "/pub/x") is None
    ks.close()
    ks = Keyspace.open(d, segment_bytes=4096, fsync="never")
    assert ks.get(u, "/pub/x") is None
    ks.close()


def test_retention_pass_run_on_a_loop_lets_the_loop_turn_while_it_works(tmp_path, users):
    ks = Keyspace.open(str(tmp_path / "ks"), segment_bytes=16384, fsync="never")
    u = users[0]
    for i in range(3000):
        ks.put(u, f"/pub/k{i % 700}", b"v" * 100)
    before = _index(ks)
    ks.log.flush()

    async def main():
        ticks = 0
        task = asyncio.get_running_loop().create_task(ks.retention_pass(max_bytes=1).run())
        while not task.done():
            await asyncio.sleep(0)
            ticks += 1
        return ticks, task.result()

    ticks, res = asyncio.run(main())
    assert res["compacted"] + res["removed"] >= 5
    assert ticks >= 10  # the loop ran other work between the pass's steps
    assert _index(ks) == before
    ks.close()


@pytest.fixture
def users():
    from engine.names import encode_user
    return [encode_user(bytes([i + 1]) * 32) for i in range(2)]
