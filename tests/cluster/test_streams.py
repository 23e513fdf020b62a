"""Event streams across the cluster: the same live bytes on every node, and a subscriber that moves from node to
node with Last-Event-ID gets every event once."""

from __future__ import annotations

from engine.names import parse_resume_point
from e2e.sse_client import SSEReader, events

from .test_replicas import put


def test_live_streams_carry_the_same_bytes_on_all_three_nodes(trio, key):
    a, b, c = trio
    pattern = f"/subscribe?p={key.user}/pub/live/*"
    readers = [SSEReader(node.port, pattern) for node in (a, b, c)]
    try:
        for r in readers:
            assert r.head() == 200
        for i in range(25):
            put(a, key, f"/pub/live/{i}", b"x" * i)
        frames = [r.read_frames(25, timeout=20) for r in readers]
        assert [len(events(f)) for f in frames] == [25, 25, 25]
        assert readers[0].body == readers[1].body == readers[2].body
    finally:
        for r in readers:
            r.close()


def test_a_subscriber_moved_from_node_to_node_gets_every_event_once(trio, key):
    a, b, c = trio
    pattern = f"/subscribe?p={key.user}/pub/move/*"
    seen: list[int] = []
    last_id = None
    written = []
    for hop, node in enumerate((b, a, c, b)):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        reader = SSEReader(node.port, pattern, headers=headers)
        assert reader.head() == 200
        for i in range(10):  # written while this subscriber reads from `node`
            r = put(a, key, f"/pub/move/{hop}-{i}", b"%d" % i)
            written.append(parse_resume_point(r.headers["event-id"]))
        # half of what it is owed, then it moves on (owed: everything after its Last-Event-ID)
        owed = len(written) - len(seen)
        got = events(reader.read_frames(owed // 2, timeout=20))[: owed // 2]
        reader.close()
        seen += [e["seq"] for e in got]
        last_id = got[-1]["id"]
    final = SSEReader(c.port, pattern, headers={"Last-Event-ID": last_id})
    rest = events(final.read_frames(len(written) - len(seen), timeout=20))
    extra = events(final.read_frames(len(written) - len(seen) + 1, timeout=0.5))  # and nothing more
    final.close()
    assert len(extra) == len(rest)
    seen += [e["seq"] for e in rest]
    assert seen == written  # every event once, in order, across four hops over three nodes
