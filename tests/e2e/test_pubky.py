"""SPEC 3.5: pubky-compatible /events/ and /events-stream, in pubky's text formats."""

import httpx
import pytest

from engine.names import content_hash

from .sse_client import SSEReader
from .test_streams import delete, put


@pytest.fixture
def written(server, alice, bob):
    with httpx.Client() as c:
        put(server.url, alice, "/pub/a/1", b"one", client=c)     # 1
        put(server.url, bob, "/pub/a/2", b"two", client=c)       # 2
        put(server.url, alice, "/priv/p", b"p", client=c)        # 3
        put(server.url, alice, "/pub/b/3", b"three", client=c)   # 4
    delete(server.url, alice, "/pub/a/1")                        # 5
    return server


def test_events_page_lists_public_events_with_a_cursor_line(written, alice, bob):
    r = httpx.get(written.url + "/events/")
    assert r.text.split("\n") == [
        f"PUT pubky://{alice.user}/pub/a/1", f"PUT pubky://{bob.user}/pub/a/2",
        f"PUT pubky://{alice.user}/pub/b/3", f"DEL pubky://{alice.user}/pub/a/1", "cursor: 5"]
    r = httpx.get(written.url + "/events/", params={"cursor": 1, "limit": 1})
    assert r.text.split("\n") == [f"PUT pubky://{bob.user}/pub/a/2", "cursor: 2"]
    assert httpx.get(written.url + "/events/", params={"cursor": 5}).text == ""
    assert httpx.get(written.url + "/events/", params={"limit": 0}).status_code == 400
    assert httpx.get(written.url + "/events/", params={"cursor": "x"}).status_code == 400


def test_events_page_signed_by_a_user_includes_their_private_events(written, alice):
    r = httpx.get(written.url + "/events/", headers={"authorization": alice.auth("GET", "/events/")})
    assert f"PUT pubky://{alice.user}/priv/p" in r.text.split("\n")


def test_events_stream_history_with_cursor_and_path(written, alice, bob):
    reader = SSEReader(written.port, f"/events-stream?user={alice.user}&user={bob.user}:1&path=/pub/a/")
    frames = reader.read_frames(until_end=True)
    assert [f["event"] for f in frames] == ["PUT", "PUT", "DEL"]
    assert frames[0]["data"].split("\n") == [f"pubky://{alice.user}/pub/a/1", "cursor: 1",
                                             f"content_hash: {content_hash(b'one')}"]
    assert frames[1]["data"].split("\n")[0] == f"pubky://{bob.user}/pub/a/2"
    assert frames[2]["data"].split("\n") == [f"pubky://{alice.user}/pub/a/1", "cursor: 5"]
    assert b"event: end" not in reader.body and reader.ended


def test_events_stream_reverse_and_limit(written, alice):
    reader = SSEReader(written.port, f"/events-stream?user={alice.user}&reverse=true&limit=2")
    frames = reader.read_frames(until_end=True)
    assert [f["data"].split("\n")[1] for f in frames] == ["cursor: 5", "cursor: 4"]


def test_events_stream_live_delivers_new_events(written, alice):
    reader = SSEReader(written.port, f"/events-stream?user={alice.user}:5&live=true")
    assert reader.head() == 200
    put(written.url, alice, "/pub/new", b"n")
    frames = reader.read_frames(1)
    assert frames[0]["data"].split("\n")[:2] == [f"pubky://{alice.user}/pub/new", "cursor: 6"]


@pytest.mark.parametrize("query", ["", "user=bad", "user={u}&reverse=true&live=true", "user={u}:x"])
def test_events_stream_rejects_bad_parameters(written, alice, query):
    r = httpx.get(written.url + "/events-stream?" + query.format(u=alice.user))
    assert r.status_code == 400


def test_events_stream_at_most_50_users(written):
    from .harness import Key

    users = "&".join(f"user={Key(bytes([i]) * 32).user}" for i in range(3, 54))
    assert httpx.get(written.url + "/events-stream?" + users).status_code == 400
