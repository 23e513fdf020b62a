"""The client library against a real server (tests/e2e/harness.py ThreadServer on 127.0.0.1)."""

from __future__ import annotations

import nacl.signing
import pytest

from e2e.harness import ThreadServer
from engine.client import (AsyncClient, Client, End, Event, NotFoundError, UnauthorizedError, user_id)
from engine.names import content_hash, event_id, item_name

KEY = nacl.signing.SigningKey(b"\x21" * 32)
OTHER = nacl.signing.SigningKey(b"\x22" * 32)
USER = user_id(KEY)


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


def test_put_get_head_delete_round_trip(server):
    with Client(server.url, KEY) as c:
        first = c.put("/pub/a/b.json", b'{"x":1}')
        assert first.created and first.uri == f"pubky://{USER}/pub/a/b.json"
        assert first.etag == content_hash(b'{"x":1}') and first.event_id == event_id(1, USER)
        again = c.put("/pub/a/b.json", b'{"x":1}')  # the same write twice in one second: not a replay
        assert again.status == 204 and again.event_id == event_id(2, USER)
        blob = c.get(f"pubky://{USER}/pub/a/b.json")
        assert blob.data == b'{"x":1}' and blob.content_type.startswith("application/json")
        assert blob.etag == first.etag
        assert c.get("/pub/a/b.json", if_none_match=blob.etag).not_modified
        assert c.head("/pub/a/b.json").data == b""
        c.put("/pub/raw", b"\x00\x01", guess_type=False)
        assert c.get("/pub/raw").content_type == "application/octet-stream"
        gone = c.delete("/pub/a/b.json")
        assert gone.event_id == event_id(4, USER)
        with pytest.raises(NotFoundError) as err:
            c.get("/pub/a/b.json")
        assert err.value.status == 404 and err.value.code
        with pytest.raises(NotFoundError):
            c.delete("/pub/a/b.json")


def test_list_pages_with_cursor_limit_and_reverse(server):
    with Client(server.url, KEY) as c:
        for name in "dcbae":
            c.put(f"/pub/l/{name}.txt", name)
        c.put("/pub/l/sub/z.txt", "z")
        everything = [f"pubky://{USER}/pub/l/{n}" for n in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "sub/z.txt")]
        assert list(c.iter_list("/pub/l/", page_size=2)) == everything
        page = c.list("/pub/l", limit=2)
        assert page.entries == everything[:2] and page.next_cursor == everything[1]
        assert c.list("/pub/l/", limit=2, cursor=page.next_cursor).entries == everything[2:4]
        assert c.list("/pub/l/", limit=2, cursor="/pub/l/d.txt").entries == everything[4:6]
        assert c.list("/pub/l/", reverse=True, limit=1).entries == everything[-1:]
        last = c.list("/pub/l/", limit=10)
        assert last.entries == everything and last.next_cursor is None


def test_private_paths_need_the_owners_key(server):
    with Client(server.url, KEY) as owner, Client(server.url) as anonymous, Client(server.url, OTHER) as other:
        owner.put("/priv/secret.txt", "s")
        assert owner.get("/priv/secret.txt").data == b"s"
        assert owner.list("/priv/").entries == [f"pubky://{USER}/priv/secret.txt"]
        with pytest.raises(UnauthorizedError):
            anonymous.get(f"{USER}/priv/secret.txt")
        with pytest.raises(UnauthorizedError):
            other.get(f"{USER}/priv/secret.txt")
        with pytest.raises(UnauthorizedError):
            other.put(f"{USER}/pub/not-mine.txt", "x")  # a key writes only its own user's paths


def test_post_appends_to_a_collection_once_per_content(server):
    with Client(server.url, KEY) as c:
        made = c.post("/pub/feed/", b"item one")
        assert made.created and made.location == f"/{USER}/pub/feed/{item_name(b'item one')}"
        assert made.uri == f"pubky://{USER}/pub/feed/{item_name(b'item one')}"
        same = c.post("/pub/feed", b"item one")
        assert same.status == 200 and same.location == made.location
        assert c.get(made.uri).data == b"item one"


def test_subscribe_replays_history_then_ends(server):
    with Client(server.url, KEY) as c:
        c.put("/pub/s/1", "a")
        c.put("/pub/other/2", "b")
        c.delete("/pub/s/1")
        values = list(c.subscribe([f"{USER}/pub/s/*"], after=0, live=False, inline=True))
    events = [v for v in values if isinstance(v, Event)]
    assert [(e.seq, e.kind, e.path) for e in events] == [(1, "PUT", "/pub/s/1"), (3, "DEL", "/pub/s/1")]
    assert events[0].body == "a" and events[0].hash == content_hash(b"a") and events[0].size == 1
    assert values[-1] == End("history", event_id(3, USER))


async def test_async_client_and_stream(server):
    async with AsyncClient(server.url, KEY) as c:
        await c.put("/pub/x.json", "{}")
        assert (await c.get("/pub/x.json")).data == b"{}"
        assert (await c.list("/pub/")).entries == [f"pubky://{USER}/pub/x.json"]
        got = [v async for v in c.subscribe("*", after=0, live=False)]
        assert [v.seq for v in got if isinstance(v, Event)] == [1]
        await c.delete("/pub/x.json")


def test_private_stream_is_signed(server):
    with Client(server.url, KEY) as c:
        c.put("/priv/p.txt", "p")
        c.put("/pub/q.txt", "q")
        mine = [v.path for v in c.subscribe(f"{USER}/*", after=0, live=False) if isinstance(v, Event)]
        theirs = [v.path for v in c.subscribe(f"{USER}/*", after=0, live=False, sign=False) if isinstance(v, Event)]
    assert mine == ["/priv/p.txt", "/pub/q.txt"] and theirs == ["/pub/q.txt"]


def test_the_same_write_from_fresh_clients_in_one_second_is_re_signed_not_refused(server):
    # each CLI run is a new process with a new Signer: the server's replay answer makes it move its timestamp on
    statuses = []
    for _ in range(3):
        with Client(server.url, KEY) as c:
            statuses.append(c.put("/pub/same", b"1").status)
    assert statuses == [201, 204, 204]
