"""--replication-ack cluster, end to end: while JetStream cannot take a write (two of three NATS servers down, no
quorum), the origin neither acknowledges it nor shows its event to anyone; once JetStream has it, both happen."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from engine.names import parse_resume_point
from e2e.sse_client import SSEReader, events

from .test_replicas import put



@pytest.mark.slow
def test_no_ack_and_no_event_before_jetstream_has_the_write(make_node, nats_cluster, key):
    a = make_node("a", lease_ttl=15.0).start()  # the origin keeps its lease through the outage
    a.wait_role("origin")
    first = put(a, key, "/pub/g/0", b"before")
    assert first.status_code == 201
    reader = SSEReader(a.port, f"/subscribe?p={key.user}/pub/g/*")
    assert reader.head() == 200
    down = nats_cluster.servers[1:]
    for server in down:
        server.kill()
    answer: dict = {}

    def write() -> None:
        try:
            target = f"/{key.user}/pub/g/1"
            answer["response"] = httpx.put(a.url + target, content=b"held", timeout=60,
                                           headers={"Authorization": key.auth("PUT", target, b"held")})
        except httpx.HTTPError as exc:
            answer["error"] = exc

    try:
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(2.0)
        assert writer.is_alive() and not answer, answer  # not acknowledged ...
        assert events(reader.read_frames(1, timeout=0.5)) == []  # ... and no event for anyone
        assert a.health()["applied_seq"] == parse_resume_point(first.headers["event-id"])
    finally:
        for server in down:
            server.start()
    writer.join(60)
    assert answer["response"].status_code == 201
    got = events(reader.read_frames(1, timeout=20))
    reader.close()
    assert [e["path"] for e in got] == ["/pub/g/1"]
    assert got[0]["seq"] == parse_resume_point(answer["response"].headers["event-id"])
