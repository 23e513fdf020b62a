"""The cluster's pure and local parts, without NATS: the apply step, the replication gate, Min-Seq, the write
redirect, and rejoin's divergence search (against a stand-in for the stream)."""

from __future__ import annotations

import asyncio

import pytest

from engine.cluster.apply import apply_record
from engine.cluster.gate import ReplicationGate
from engine.cluster.rejoin import divergence
from engine.cluster.writes import is_write, redirect
from engine.api.min_seq import parse_min_seq
from engine.errors import BadRequest
from engine.http.message import Request
from engine.keyspace import Keyspace
from engine.log.record import PUT
from engine.names import encode_user, event_id

USER = encode_user(b"\x05" * 32)


def framed(log, seq: int) -> bytes:
    return b"".join(bytes(v) for _f, _l, v in log.read_raw(seq, until=seq))


@pytest.fixture
def two(tmp_path):
    origin = Keyspace.open(str(tmp_path / "o"), segment_bytes=8192)
    replica = Keyspace.open(str(tmp_path / "r"), segment_bytes=8192)
    yield origin, replica
    origin.close()
    replica.close()


def test_apply_record_gives_the_replica_the_origins_keys_and_tells_its_listeners(two):
    origin, replica = two
    heard = []
    replica.add_listener(lambda kind, user, path, rec: heard.append((kind, path, rec.seq)))
    origin.put(USER, "/pub/a", b"1")
    origin.put(USER, "/pub/b", b"2")
    origin.put(USER, "/pub/a", b"3")
    origin.delete(USER, "/pub/b")
    origin.log.flush()
    assert replica.list(USER, "/pub/") == []  # the sorted listing is cached from here on
    for seq in range(1, 5):
        apply_record(replica, framed(origin.log, seq))
    assert replica.list(USER, "/pub/") == origin.list(USER, "/pub/") == ["/pub/a"]
    assert replica.read_value(replica.get(USER, "/pub/a")) == b"3"
    assert replica.get(USER, "/pub/b") is None
    assert heard == [(PUT, "/pub/a", 1), (PUT, "/pub/b", 2), (PUT, "/pub/a", 3), (2, "/pub/b", 4)]


class FakeLog:
    def __init__(self):
        self.durable_seq = 0
        self.listeners = []

    def add_commit_listener(self, fn):
        self.listeners.append(fn)

    def commit(self, *seqs):
        self.durable_seq = seqs[-1]
        for fn in self.listeners:
            fn([Rec(s) for s in seqs])


class Rec:
    def __init__(self, seq):
        self.seq = seq


def test_the_gate_passes_commits_at_once_unless_it_holds_them_for_jetstream():
    log = FakeLog()
    gate = ReplicationGate(log)
    out = []
    gate.add_commit_listener(lambda records: out.append([r.seq for r in records]))
    log.commit(1, 2)
    assert out == [[1, 2]] and gate.released_seq == 2
    gate.set_hold(True, 2)
    log.commit(3, 4, 5)
    assert out[-1] == [] and gate.released_seq == 2 and gate.held == 3
    gate.acked(4)
    assert out[-1] == [3, 4] and gate.released_seq == 4
    gate.acked(3)  # late or repeated acknowledgements change nothing
    assert gate.released_seq == 4 and gate.held == 1
    log.commit(6)
    gate.acked(6)
    assert out[-1] == [5, 6] and gate.held == 0
    gate.set_hold(False, 6)
    log.commit(7)
    assert out[-1] == [7] and gate.released_seq == 7


def test_dropping_the_hold_releases_what_was_held_in_order():
    log = FakeLog()
    gate = ReplicationGate(log)
    out = []
    gate.add_commit_listener(lambda records: out.extend(r.seq for r in records))
    gate.set_hold(True, 0)
    log.commit(1, 2)
    assert out == []
    gate.set_hold(False, 0)
    log.commit(3)
    assert out == [1, 2, 3]


def test_min_seq_takes_a_decimal_seq_a_13_character_seq_or_an_event_id():
    assert parse_min_seq(b"42") == 42
    eid = event_id(42, USER)
    assert parse_min_seq(eid.encode()) == 42
    assert parse_min_seq(eid.split(".")[0].encode()) == 42
    for bad in (b"", b"-1", b"4 2", b"\xff", b"x" * 200):
        with pytest.raises(BadRequest):
            parse_min_seq(bad)


def request(method: str, target: str) -> Request:
    return Request(method, target.encode(), target.split("?")[0], [], {})


def test_only_writes_are_redirected_and_to_the_same_target_on_the_origin():
    assert is_write(request("PUT", f"/{USER}/pub/a"))
    assert is_write(request("DELETE", f"/{USER}/pub/a"))
    assert is_write(request("POST", f"/{USER}/pub/c/"))
    assert is_write(request("POST", "/set/x"))
    assert is_write(request("POST", "/signup"))  # the origin keeps the user table that writes are checked against
    for method, target in (("GET", f"/{USER}/pub/a"), ("POST", "/get"), ("POST", "/bloom"),
                           ("POST", f"/sync/{USER}/pub/c/"), ("HEAD", f"/{USER}/pub/a"), ("GET", "/subscribe")):
        assert not is_write(request(method, target)), (method, target)
    r = redirect("http://origin:6286/", request("PUT", f"/{USER}/pub/a%20b?x=1"))
    assert r.status == 307 and (b"location", f"http://origin:6286/{USER}/pub/a%20b?x=1".encode()) in r.headers
    none = redirect(None, request("PUT", f"/{USER}/pub/a"))
    assert none.status == 503 and (b"retry-after", b"1") in none.headers


class FakeStream:
    """The stream as rejoin sees it: (first, last) and the bytes at a seq."""

    def __init__(self, records: dict[int, bytes]):
        self.records = records

    async def stream_state(self):
        return (min(self.records), max(self.records)) if self.records else (0, 0)

    async def record(self, seq):
        return self.records.get(seq)


def test_divergence_finds_where_a_deposed_origins_log_leaves_the_stream(two):
    origin, other = two
    for i in range(6):
        origin.put(USER, f"/pub/{i}", b"%d" % i)
    origin.log.flush()
    ours = {s: framed(origin.log, s) for s in range(1, 7)}
    # the stream took 1..4 from us, then another origin wrote 5..7
    stream = {**{s: ours[s] for s in range(1, 5)}, 5: b"other5", 6: b"other6", 7: b"other7"}
    run = asyncio.run
    assert run(divergence(FakeStream(stream), origin.log, other_origin=True)) == 4
    # the stream took all six: nothing to drop
    assert run(divergence(FakeStream(dict(ours)), origin.log, other_origin=True)) is None
    # the stream took 1..3 and nobody else writes: keep 4..6 (this node may take the lease and publish them)
    short = {s: ours[s] for s in range(1, 4)}
    assert run(divergence(FakeStream(short), origin.log, other_origin=False)) is None
    # ... but another node holds the lease: 4..6 go
    assert run(divergence(FakeStream(short), origin.log, other_origin=True)) == 3
