"""The follower over shared segments: a Keyspace written in one place, followed through a LogReader and a
SharedCursor, must hold the same index and see nothing past the published durable seq."""

from __future__ import annotations

import pytest

from engine.follower import SegmentFeed
from engine.keyspace import Keyspace
from engine.log.cursor import SharedCursor
from engine.log.record import DEL, PUT

U1 = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
U2 = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1y"


@pytest.fixture
def writer(tmp_path):
    ks = Keyspace.open(str(tmp_path / "data"), segment_bytes=4096, fsync="never")
    yield ks
    ks.close()


@pytest.fixture
def cursor(tmp_path):
    cur = SharedCursor.create(str(tmp_path / "cursor"))
    yield cur
    cur.close()


def publish(writer, cursor, epoch=0, generation=1):
    cursor.publish(writer.log.durable_seq, writer.log.first_seq, epoch=epoch, generation=generation)


def snapshot(ks):
    return {(u, p): bytes(ks.read_value(ks.get(u, p))) for u in ks.users() for p in ks.list(u, "/", limit=1000)}


def test_feed_builds_the_index_up_to_the_durable_seq_only(writer, cursor, tmp_path):
    writer.put(U1, "/pub/a", b"one")
    writer.put(U1, "/pub/b", b"two")
    publish(writer, cursor)
    writer.put(U1, "/pub/c", b"not yet published")
    feed = SegmentFeed.open(str(tmp_path / "data"), cursor)
    assert feed.applied == 2
    assert feed.keyspace.get(U1, "/pub/c") is None
    assert snapshot(feed.keyspace) == {(U1, "/pub/a"): b"one", (U1, "/pub/b"): b"two"}


def test_feed_applies_new_records_across_segment_rolls_and_notifies_in_order(writer, cursor, tmp_path):
    publish(writer, cursor)
    feed = SegmentFeed.open(str(tmp_path / "data"), cursor)
    seen = []
    feed.reader.add_commit_listener(lambda recs: seen.extend(r.seq for r in recs))
    for i in range(60):  # 4 KiB segments: several rolls
        writer.put(U2, f"/pub/k{i % 7}", b"x" * 200 + bytes([i]))
    writer.delete(U2, "/pub/k3")
    feed.fresh()
    assert feed.applied == 0  # nothing published yet
    publish(writer, cursor)
    feed.fresh()
    assert feed.applied == writer.log.durable_seq == 61
    assert seen == list(range(1, 62))
    assert writer.log.segment_count > 3
    assert snapshot(feed.keyspace) == snapshot(writer)
    assert [r.seq for r in feed.reader.read_from(55)] == list(range(55, 62))


def test_feed_reloads_after_retention_and_keeps_every_live_key(writer, cursor, tmp_path):
    for i in range(40):
        writer.put(U1, f"/pub/k{i % 5}", b"y" * 300 + bytes([i]))
    publish(writer, cursor)
    feed = SegmentFeed.open(str(tmp_path / "data"), cursor)
    before = snapshot(feed.keyspace)
    result = writer.apply_retention(max_bytes=1)
    assert result["compacted"] + result["removed"] > 0
    writer.put(U1, "/pub/new", b"after retention")
    publish(writer, cursor, epoch=1)
    feed.catch_up()
    assert feed.reloads_total == 1
    assert snapshot(feed.keyspace) == {**before, (U1, "/pub/new"): b"after retention"}
    assert feed.reader.first_seq == writer.log.first_seq


def test_keyspace_apply_matches_put_and_delete(writer, cursor, tmp_path):
    publish(writer, cursor)
    feed = SegmentFeed.open(str(tmp_path / "data"), cursor)
    changes = []
    feed.keyspace.add_listener(lambda kind, user, path, rec: changes.append((kind, path, rec.seq)))
    writer.put(U1, "/pub/x", b"1")
    writer.put(U1, "/pub/x", b"2")
    writer.delete(U1, "/pub/x")
    publish(writer, cursor)
    feed.catch_up()
    assert changes == [(PUT, "/pub/x", 1), (PUT, "/pub/x", 2), (DEL, "/pub/x", 3)]
    assert feed.keyspace.get(U1, "/pub/x") is None and feed.keyspace.count == 0


def test_a_listener_that_applies_a_newer_batch_still_sees_batches_in_order(writer, cursor, tmp_path):
    """A released write lets its connection read the next request, whose catch-up applies more records while the
    listeners of the first batch are still being called: every listener must still get the batches in order."""
    publish(writer, cursor)
    feed = SegmentFeed.open(str(tmp_path / "data"), cursor)
    first, second = [], []
    state = {"nested": False}

    def releasing(records):
        first.append([r.seq for r in records])
        if not state["nested"]:
            state["nested"] = True
            writer.put(U1, "/pub/later", b"2")
            publish(writer, cursor)
            feed.fresh()  # the next request's catch-up, from inside this listener
            assert feed.keyspace.get(U1, "/pub/later") is not None  # the nested request reads its write

    feed.reader.add_commit_listener(releasing)
    feed.reader.add_commit_listener(lambda records: second.append([r.seq for r in records]))
    writer.put(U1, "/pub/first", b"1")
    publish(writer, cursor)
    feed.fresh()
    assert first == [[1], [2]]
    assert second == [[1], [2]]  # the hub's place: never [2] before [1]
