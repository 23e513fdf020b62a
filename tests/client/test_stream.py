"""The event stream client against a scripted SSE server: parsing, dedupe, resume, gap/end, back-off, state."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.client import AsyncClient, Client, End, Event, Gap
from engine.client.errors import ApiError, BadReference, ConnectionFailed
from engine.client.stream import SSEParser, StateFile, _Core
from engine.http.sse import parse_frames
from engine.names import event_id

from .sse_fake import USER, FakeSSE, end_frame, event_frame, gap_frame

ALL = "*"


def _ids(values):
    return [v.seq for v in values if isinstance(v, Event)]


# ---- parser ----

SAMPLE = (b"retry: 2000\n\n: keep-alive\n\n" + event_frame(1) + event_frame(2, "DEL") + gap_frame(3, 9)
          + b"event: end\ndata: {\"reason\":\n" + b"data: \"limit\", \"last\": null}\n\n")


def test_sse_parser_whole_input_matches_the_server_side_parser():
    frames = SSEParser().feed(SAMPLE)
    assert frames == parse_frames(SAMPLE.decode())


def test_sse_parser_byte_by_byte_gives_the_same_frames():
    parser = SSEParser()
    frames = []
    for i in range(len(SAMPLE)):
        frames += parser.feed(SAMPLE[i:i + 1])
    assert frames == SSEParser().feed(SAMPLE)


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_sse_parser_accepts_every_line_end_even_split_across_chunks(eol):
    text = SAMPLE.replace(b"\n", eol)
    parser = SSEParser()
    frames = []
    for i in range(0, len(text), 3):
        frames += parser.feed(text[i:i + 3])
    assert frames == SSEParser().feed(SAMPLE)


def test_sse_parser_keeps_an_incomplete_frame_for_later():
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb\xbfid: 1\nevent: PUT\ndata: {") == []
    assert parser.feed(b"}\n") == []
    assert parser.feed(b"\n") == [{"id": "1", "event": "PUT", "data": "{}"}]


# ---- stream against a scripted server ----

def test_stream_yields_typed_events_and_ends_on_history():
    frames = [b"retry: 100\n\n", event_frame(1), event_frame(2, "DEL"), end_frame("history", event_id(2, USER))]
    with FakeSSE(lambda n, req: frames) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, after=0, live=False))
    assert isinstance(values[0], Event) and values[0].kind == "PUT" and values[0].size == 2
    assert values[0].id == event_id(1, USER) and values[0].uri == f"pubky://{USER}/pub/a/1.json"
    assert values[1].kind == "DEL" and values[1].hash is None and values[1].size is None
    assert values[2] == End("history", event_id(2, USER))
    req = srv.requests[0]
    assert ("p", "*") in req.query and ("live", "false") in req.query
    assert req.header("last-event-id") == "0"
    assert req.header("authorization") is None  # no key, no signature


def test_stream_resumes_with_last_event_id_and_drops_duplicates():
    def script(n, req):
        if n == 0:
            return [b"retry: 20\n\n", event_frame(1), event_frame(2), event_frame(3), "close"]
        # a careless server replays from before the resume point: the client must not yield 2 or 3 again
        return [b"retry: 20\n\n", event_frame(2), event_frame(3), event_frame(4), event_frame(5),
                end_frame("limit", event_id(5, USER))]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, after=0))
    assert _ids(values) == [1, 2, 3, 4, 5]
    assert srv.requests[1].header("last-event-id") == event_id(3, USER)


def test_stream_reconnects_after_end_shutdown_and_evicted_but_not_after_limit():
    def script(n, req):
        if n == 0:
            return [b"retry: 10\n\n", event_frame(1), end_frame("shutdown", event_id(1, USER)), "close"]
        if n == 1:
            return [event_frame(2), end_frame("evicted", event_id(2, USER)), "close"]
        return [event_frame(3), end_frame("limit", event_id(3, USER))]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL))
    assert [type(v).__name__ for v in values] == ["Event", "End", "Event", "End", "Event", "End"]
    assert [v.reason for v in values if isinstance(v, End)] == ["shutdown", "evicted", "limit"]
    assert srv.requests[1].header("last-event-id") == event_id(1, USER)
    assert srv.requests[2].header("last-event-id") == event_id(2, USER)


def test_stream_reconnect_on_end_false_stops_at_shutdown():
    frames = [event_frame(1), end_frame("shutdown", event_id(1, USER)), "close"]
    with FakeSSE(lambda n, req: frames) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, reconnect_on_end=False))
    assert values[-1] == End("shutdown", event_id(1, USER)) and len(srv.requests) == 1


def test_stream_surfaces_a_gap_and_resumes_after_it():
    def script(n, req):
        if n == 0:
            return [b"retry: 10\n\n", gap_frame(1, 6), event_frame(7), "close"]
        return [gap_frame(1, 6), event_frame(7), event_frame(8), end_frame("limit", None)]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, after=0))
    assert values[0] == Gap(1, 6)
    assert _ids(values) == [7, 8]
    assert sum(isinstance(v, Gap) for v in values) == 1  # the repeated gap is already covered


def test_gap_alone_moves_the_resume_point_to_its_end():
    def script(n, req):
        if n == 0:
            return [b"retry: 10\n\n", gap_frame(1, 6), "close"]
        return [event_frame(7), end_frame("limit", None)]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, after=0))
    assert values == [Gap(1, 6), values[1], End("limit", None)]
    assert srv.requests[1].header("last-event-id") == "6"


def test_stream_retries_5xx_and_honours_the_servers_retry_as_base_delay():
    def script(n, req):
        if n < 2:
            return [("status", 503, '{"error":"unavailable","message":"busy"}')]
        return [event_frame(1), end_frame("limit", None)]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        t0 = time.monotonic()
        values = list(client.subscribe(ALL, base_delay=0.05))
        assert time.monotonic() - t0 < 2
    assert _ids(values) == [1] and len(srv.requests) == 3


def test_stream_raises_a_client_error_answer_without_retrying():
    body = '{"error":"invalid_name","message":"invalid pattern \'x\'"}'
    with FakeSSE(lambda n, req: [("status", 400, body)]) as srv, Client(srv.url) as client:
        with pytest.raises(ApiError) as err:
            list(client.subscribe(ALL))
    assert err.value.status == 400 and err.value.code == "invalid_name" and len(srv.requests) == 1


def test_stream_wait_first_false_fails_fast_when_unreachable():
    from e2e.harness import free_port

    with Client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectionFailed):
            next(iter(client.subscribe(ALL, wait_first=False)))


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    with Client("http://127.0.0.1:1") as client:
        core = _Core(client, ALL, base_delay=1.0, max_delay=8.0)
        for attempt, ceiling in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8)]:
            delays = [core.delay(attempt) for _ in range(50)]
            assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
            assert len(set(delays)) > 1  # jitter
        core.handle({"retry": "250"})
        assert 0.125 <= core.delay(0) <= 0.25


def test_stream_rejects_bad_patterns_and_resume_points_before_connecting():
    with Client("http://127.0.0.1:1") as client:
        with pytest.raises(BadReference, match="pattern"):
            client.subscribe("*/pub/a*b")
        with pytest.raises(BadReference):
            client.subscribe(ALL, after="not-an-id")
        with pytest.raises(BadReference):
            client.subscribe([])


def test_signed_stream_sends_authorization_for_get_subscribe():
    import nacl.signing

    from engine.http.auth import Authenticator

    key = nacl.signing.SigningKey(b"\x05" * 32)
    frames = [event_frame(1), end_frame("limit", None)]
    with FakeSSE(lambda n, req: frames) as srv, Client(srv.url, key) as client:
        list(client.subscribe(f"{client.user}/*"))
        header = srv.requests[0].header("authorization")
    assert Authenticator().verify(header, "GET", "/subscribe", b"", write=False) == client.user


# ---- state file ----

def test_state_file_saves_the_last_handled_event_and_a_new_stream_resumes_after_it(tmp_path):
    state = tmp_path / "pos"

    def script(n, req):
        if n == 0:
            return [event_frame(1), event_frame(2), event_frame(3)]
        return [event_frame(3), event_frame(4), end_frame("limit", None)]

    with FakeSSE(script) as srv, Client(srv.url) as client:
        stream = client.subscribe(ALL, after=0, state=state)
        assert next(stream).seq == 1
        assert not state.exists()  # nothing handled yet
        assert next(stream).seq == 2
        assert state.read_text() == event_id(1, USER) + "\n"  # 1 handled once the caller asked for more
        stream.commit()
        assert state.read_text() == event_id(2, USER) + "\n"
        stream.close()
        values = list(client.subscribe(ALL, after=0, state=state))  # the file wins over after=0
    assert srv.requests[1].header("last-event-id") == event_id(2, USER)
    assert _ids(values) == [3, 4]
    assert state.read_text() == event_id(4, USER) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pos"]  # no temp file left behind


def test_state_file_with_garbage_is_a_bad_reference(tmp_path):
    state = tmp_path / "pos"
    state.write_text("hello\n")
    with pytest.raises(BadReference, match="not a stream position"):
        StateFile(state).load()


# ---- async ----

async def test_async_stream_resumes_dedupes_and_saves_state(tmp_path):
    state = tmp_path / "pos"

    def script(n, req):
        if n == 0:
            return [b"retry: 10\n\n", event_frame(1), event_frame(2), "close"]
        return [event_frame(1), event_frame(2), gap_frame(3, 4), event_frame(5), end_frame("limit", None)]

    with FakeSSE(script) as srv:
        async with AsyncClient(srv.url) as client:
            got = []
            async with client.subscribe(ALL, after=0, state=state) as stream:
                async for value in stream:
                    got.append(value)
    assert _ids(got) == [1, 2, 5] and Gap(3, 4) in got and got[-1] == End("limit", None)
    assert srv.requests[1].header("last-event-id") == event_id(2, USER)
    assert state.read_text() == event_id(5, USER) + "\n"


async def test_async_stream_can_be_cancelled_while_waiting():
    with FakeSSE(lambda n, req: [event_frame(1)]) as srv:
        async with AsyncClient(srv.url) as client:
            stream = client.subscribe(ALL)

            async def consume():
                return [v async for v in stream]

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await stream.aclose()


def test_a_relays_upstream_gap_keeps_the_relays_position_and_names_the_upstream():
    upstream_gap = b'id: 0000000000008\nevent: gap\ndata: {"upstream":"alice","from":100,"to":900}\n\n'

    def script(n, req):
        if n == 0:
            return [b"retry: 10\n\n", event_frame(7), upstream_gap, "close"]
        return [upstream_gap, event_frame(9), end_frame("limit", None)]  # the gap again: already handled

    with FakeSSE(script) as srv, Client(srv.url) as client:
        values = list(client.subscribe(ALL, after=0))
    assert values[1] == Gap(100, 900, "alice")
    assert _ids(values) == [7, 9]  # seqs 100..900 of the upstream did not swallow the relay's seq 9
    assert sum(isinstance(v, Gap) for v in values) == 1
    assert srv.requests[1].header("last-event-id") == "0000000000008"
