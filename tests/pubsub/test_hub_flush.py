"""The hub writes each subscriber once per loop turn: every frame published in the turn in one `writelines`,
in seq order, and nothing to a stream that has closed."""

from __future__ import annotations

import asyncio

import pytest

from engine.bench.fanout import USER
from engine.log.record import PUT, Record
from engine.metrics import Metrics
from engine.names import parse_pattern
from engine.pubsub.hub import Hub
from engine.pubsub.subscription import CLOSED, Subscription


class FakeTransport:
    def __init__(self):
        self.calls: list[list[bytes]] = []  # one entry per writelines call
        self.closing = False

    def writelines(self, chunks):
        self.calls.append(list(chunks))

    def write(self, data):
        pass  # the preamble and keepalives: not event frames

    def set_write_buffer_limits(self, high, low):
        pass

    def is_closing(self):
        return self.closing


class FakeConn:
    def __init__(self):
        self.transport = FakeTransport()


class FakeLog:
    durable_seq = 0
    first_seq = 1


@pytest.fixture
def hub():
    loop = asyncio.new_event_loop()
    h = Hub(FakeLog(), Metrics(), loop)
    yield h
    h.close()
    loop.close()


def record(seq: int) -> Record:
    return Record(seq, 1_700_000_000_000 + seq, PUT, USER, f"/pub/bench/{seq}.json", b"\0" * 32, "", b"{}")


def subscribe(hub: Hub) -> Subscription:
    sub = Subscription(hub, FakeConn(), [parse_pattern(f"{USER}/pub/bench/*")], None, limit=None)
    return hub.attach(sub, None)


def commit(hub: Hub, seqs: range) -> None:
    hub.log.durable_seq = seqs[-1]
    hub.publish([record(s) for s in seqs])


def run_one_turn(hub: Hub) -> None:
    hub.loop.run_until_complete(asyncio.sleep(0))


def test_commits_published_in_one_loop_turn_reach_each_subscriber_in_one_write(hub):
    subs = [subscribe(hub) for _ in range(3)]
    commit(hub, range(1, 4))
    commit(hub, range(4, 6))
    assert all(s.transport.calls == [] for s in subs)  # nothing written before the turn ends
    run_one_turn(hub)
    for s in subs:
        assert len(s.transport.calls) == 1
        assert [f.count(b'"seq":') for f in s.transport.calls[0]] == [1] * 5
        assert [int(f.split(b'"seq":')[1].split(b",")[0]) for f in s.transport.calls[0]] == [1, 2, 3, 4, 5]
    assert hub.flushes_total == 3


def test_a_commit_already_landed_shares_the_write_of_the_one_before(hub):
    sub = subscribe(hub)
    commit(hub, range(1, 3))
    hub.log.durable_seq = 4  # the next commit landed; its delivery is queued behind the flush
    hub.loop.call_soon(hub.publish, [record(3), record(4)])
    run_one_turn(hub)
    run_one_turn(hub)
    assert len(sub.transport.calls) == 1
    assert len(sub.transport.calls[0]) == 4


def test_the_flush_steps_aside_only_once(hub):
    sub = subscribe(hub)
    commit(hub, range(1, 3))
    hub.log.durable_seq = 9  # durable records that no delivery will bring: the frames still go out
    run_one_turn(hub)
    run_one_turn(hub)
    assert len(sub.transport.calls) == 1


def test_a_stream_closed_before_the_flush_gets_nothing(hub):
    gone, kept = subscribe(hub), subscribe(hub)
    commit(hub, range(1, 3))
    gone.on_disconnect()
    run_one_turn(hub)
    assert gone.mode == CLOSED and gone.transport.calls == [] and gone.queue == []
    assert len(kept.transport.calls) == 1
