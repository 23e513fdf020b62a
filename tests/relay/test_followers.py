"""The followers against a real log: a pubky page resumed mid-way after a crash, a homestream follower's frame
handling (replays dropped, gaps recorded once, `end` reconnects), and cursor recovery from the log."""

import asyncio
import json

import httpx
import pytest

from engine.errors import StorageError
from engine.log.record import GAP, PUT
from engine.log.store import Log
from engine.names import encode_user
from engine.relay.cursors import newest_records, recover
from engine.relay.homestream import HomestreamFollower, UpstreamEnded
from engine.relay.pubky import PubkyFollower
from engine.relay.record import Meta
from engine.relay.upstreams import UpstreamSpec

from .pubky_fake import PubkyFake

USER = encode_user(bytes([9]) * 32)
HASH = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
pytestmark = pytest.mark.hard_timeout(30)


def open_log(path):
    return Log.open(str(path), segment_bytes=64 * 1024, fsync="always")


def relay_events(log):
    log.flush()
    return [(r.kind, r.path, Meta.decode(bytes(r.ext))) for r in log.read_from(1)]


def test_pubky_page_cut_by_a_crash_resumes_at_the_next_event_of_that_page(tmp_path):
    fake = PubkyFake(step=3).start()
    try:
        for i in range(30):
            fake.add("PUT", USER, f"/pub/k/{i:02d}")
        log = open_log(tmp_path / "r")
        f = PubkyFollower(UpstreamSpec("p", fake.url), log)
        real_append, n = log.append, [0]

        def failing_append(*a, **kw):
            n[0] += 1
            if n[0] > 7:
                raise StorageError("disk gone")
            return real_append(*a, **kw)

        log.append = failing_append

        async def poll_once():
            async with httpx.AsyncClient() as http:
                return await f.poll(http)

        with pytest.raises(StorageError):
            asyncio.run(poll_once())
        log.append = real_append
        log.close()

        log = open_log(tmp_path / "r")
        last = recover(log, ["p"])["p"]
        assert (last[0], last[1].cursor, last[1].index) == (7, 0, 7)
        f = PubkyFollower(UpstreamSpec("p", fake.url), log, last=last)
        assert asyncio.run(poll_once()) is False  # a short page: caught up
        got = relay_events(log)
        assert [p for _k, p, _m in got] == [f"/pub/k/{i:02d}" for i in range(30)]
        assert [m.index for _k, _p, m in got] == list(range(1, 31))
        assert got[-1][2].uid == fake.events[-1][0] and f.cursor_text == str(fake.events[-1][0])
        assert asyncio.run(poll_once()) is False and len(relay_events(log)) == 30  # nothing new, nothing again
        log.close()
    finally:
        fake.stop()


def frame(event, **doc):
    return {"event": event, "id": "x", "data": json.dumps(doc)}


def test_homestream_follower_drops_replays_records_gaps_once_and_ends_on_end(tmp_path):
    log = open_log(tmp_path / "h")
    f = HomestreamFollower(UpstreamSpec("a", "http://127.0.0.1:1"), log)
    put = dict(user=USER, path="/pub/a", hash=HASH, size=3, ts=1)
    f.on_frame(frame("PUT", seq=1, body="abc", **put))
    f.on_frame(frame("PUT", seq=2, **put))
    f.on_frame(frame("PUT", seq=2, **put))  # the same event again (a replay): dropped
    f.on_frame(frame("gap", **{"from": 3, "to": 9}))
    f.on_frame(frame("gap", **{"from": 3, "to": 9}))  # already covered: no second gap
    f.on_frame(frame("DEL", seq=10, user=USER, path="/pub/a", ts=2))
    f.on_frame({"retry": "2000"})
    with pytest.raises(UpstreamEnded) as ended:
        f.on_frame(frame("end", reason="shutdown", last=None))
    assert ended.value.reason == "shutdown"
    log.flush()
    got = relay_events(log)
    assert [(k, m.cursor) for k, _p, m in got] == [(PUT, 1), (PUT, 2), (GAP, 9), (2, 10)]
    assert (got[2][2].a, got[2][2].b) == (3, 9)
    assert bytes(next(log.read_from(1)).value) == b"abc" and next(log.read_from(2)).value == b""
    assert f.resume() == (10, 0) and f.gaps_total == 1 and f.events_total == 3
    log.close()


def test_recover_finds_each_upstreams_newest_record_across_segments_and_retention_keeps_it(tmp_path):
    log = open_log(tmp_path / "c")
    quiet = HomestreamFollower(UpstreamSpec("quiet", "http://h"), log)
    busy = HomestreamFollower(UpstreamSpec("busy", "http://h"), log)
    quiet.append_event(PUT, USER, "/pub/q", b"\1" * 32, None, Meta("quiet", 5, 5, 1, 0))
    for i in range(1, 400):
        busy.append_event(PUT, USER, f"/pub/b{i}", b"\1" * 32, b"x" * 200, Meta("busy", i, i, 1, 200))
    log.flush()
    assert log.segment_count > 2
    found = recover(log, ["quiet", "busy", "never"])
    assert found["quiet"][1].cursor == 5 and found["busy"][1].cursor == 399 and "never" not in found
    log.apply_retention(max_bytes=1, is_live=newest_records([quiet, busy]))
    assert log.first_seq > 1
    log.close()
    log = open_log(tmp_path / "c")
    found = recover(log, ["quiet", "busy"])
    assert (found["quiet"][0], found["quiet"][1].cursor) == (1, 5)  # kept by retention though old
    assert found["busy"][1].cursor == 399
    log.close()


def test_an_upstreams_kind_cannot_change_once_the_relay_holds_its_records(tmp_path):
    from engine.relay.service import RelayService

    log = open_log(tmp_path / "k")
    HomestreamFollower(UpstreamSpec("a", "http://h"), log).append_event(
        PUT, USER, "/pub/x", b"\1" * 32, None, Meta("a", 3, 3, 1, 0))
    log.flush()
    recovered = recover(log, ["a"])
    with pytest.raises(ValueError, match="followed as homestream"):
        RelayService([UpstreamSpec("a", "http://h", "pubky")], log, recovered)
    svc = RelayService([UpstreamSpec("a", "http://h")], log, recovered)  # kind known from the log: no probe
    assert svc.followers[0].kind == "homestream" and svc.followers[0].resume() == (3, 0)
    log.close()


def test_a_body_over_the_relays_value_limit_is_dropped_but_the_event_kept_with_its_hash_and_size(tmp_path):
    log = Log.open(str(tmp_path / "v"), segment_bytes=64 * 1024, fsync="always", max_value_bytes=10)
    f = HomestreamFollower(UpstreamSpec("a", "http://h"), log)
    assert f.append_event(PUT, USER, "/pub/big", b"\2" * 32, b"y" * 11, Meta("a", 1, 1, 1, 11))
    assert f.append_event(PUT, USER, "/pub/fits", b"\2" * 32, b"y" * 10, Meta("a", 2, 2, 1, 10))
    assert not f.append_event(PUT, USER, "/pub/../bad", b"\2" * 32, None, Meta("a", 3, 3, 1, 0))
    got = relay_events(log)
    assert [(p, m.b, bool(m.flags & 4)) for _k, p, m in got] == [("/pub/big", 11, False), ("/pub/fits", 10, True)]
    assert bytes(next(log.read_from(1)).digest) == b"\2" * 32 and f.skipped_total == 1
    log.close()
