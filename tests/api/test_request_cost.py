"""Issue 21 items 4 and 5 against a real server: what a request costs is bounded by the server's data and by
settings, never by what the client claims -- each limit hit exactly and one past it, and a good request served
afterwards."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from e2e.sse_client import SSEReader
from engine.names import content_digest, content_hash, item_name
from engine.pubsub import history


def strict(text: str):
    """A strict JSON parser: NaN, Infinity and raw line separators are refused."""
    assert "\u2028" not in text and "\u2029" not in text and "\x85" not in text
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def write_direct(srv, rows):
    """Append (user, path, value) rows on the server's loop (fast), then wait until they are published."""
    def put_all(part):
        for user, path, value in part:
            srv.app.keyspace.put(user, path, value, "application/octet-stream")
        return srv.app.log.last_seq

    for i in range(0, len(rows), 5000):
        last = srv.call(put_all, rows[i:i + 5000])
    deadline = time.monotonic() + 20
    while srv.app.hub.published_seq < last and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.app.hub.published_seq >= last
    return last


def items_in(srv, user, dir_path, values):
    write_direct(srv, [(user, dir_path + item_name(v), v) for v in values])


# ---- /get ----

def test_get_storage_limits_at_the_edge_and_repeats_count_once(make_server, alice):
    srv = make_server(seed_max_storages=3, seed_max_filters=2, seed_max_hashes=3)
    for d in ("a", "b", "c", "d"):
        items_in(srv, alice.user, f"/pub/{d}/", [f'"{d}1"'.encode(), f'"{d}2"'.encode()])
    ids = [f"{alice.user}/pub/{d}/" for d in "abcd"]
    r = httpx.post(srv.url + "/get", json={"items": ids[:3]})
    assert r.status_code == 200 and len(r.json()["items"]) == 6
    r = httpx.post(srv.url + "/get", json={"items": ids})
    assert r.status_code == 400 and "at most 3 storages" in r.json()["message"]
    # the same storage 5000 times is one storage: its items once
    r = httpx.post(srv.url + "/get", json={"items": [ids[0]] * 5000})
    assert r.status_code == 200 and [i["value"] for i in r.json()["items"]] == ["a1", "a2"]
    # named twice with different filters: 400 (which one would it be?)
    f1 = base64.b64encode(bytes(8)).decode()
    f2 = base64.b64encode(bytes([255]) * 8).decode()
    r = httpx.post(srv.url + "/get", json={"items": [{"id": ids[0], "bloomFilter": f1},
                                                     {"id": ids[0], "bloomFilter": f2}]})
    assert r.status_code == 400
    # filters: 2 pass, 3 are 400
    two = [{"id": ids[i], "bloomFilter": f1} for i in range(2)]
    assert httpx.post(srv.url + "/get", json={"items": two}).status_code == 200
    three = two + [{"id": ids[2], "bloomFilter": f1}]
    r = httpx.post(srv.url + "/get", json={"items": three})
    assert r.status_code == 400 and "bloomFilters" in r.json()["message"]
    # hashes: 3 pass, 4 are 400
    h = [content_hash(b'"a1"')] * 3
    assert httpx.post(srv.url + "/get", json={"id": ids[0], "hashes": h}).json()["items"][0]["value"] == "a1"
    assert httpx.post(srv.url + "/get", json={"id": ids[0], "hashes": h + h[:1]}).status_code == 400
    # still serving
    assert httpx.get(srv.url + "/get", params={"id": ids[3]}).json()["items"][1]["value"] == "d2"


def test_a_large_get_answer_is_streamed_in_chunks_not_built_whole(server, alice):
    big = [json.dumps({"n": i, "pad": "x" * 40_000}).encode() for i in range(40)]  # ~1.6 MB of items
    items_in(server, alice.user, "/pub/big/", big)
    storage = f"{alice.user}/pub/big/"
    with httpx.stream("GET", server.url + "/get", params={"id": storage}) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
        body = r.read()
        assert r.headers.get("connection") == "close"  # the connection ends with it: no client reuses it
    doc = strict(body.decode())
    assert [i["value"]["n"] for i in doc["items"]] == list(range(40))
    with httpx.Client() as c:  # a keep-alive client goes on after a streamed answer (on a new connection)
        assert len(c.get(server.url + "/get", params={"id": storage}).json()["items"]) == 40
        assert c.get(server.url + "/healthz").status_code == 200
    # small answers keep Content-Length (and the connection)
    items_in(server, alice.user, "/pub/small/", [b"1"])
    r = httpx.get(server.url + "/get", params={"id": f"{alice.user}/pub/small/"})
    assert r.headers["content-length"] == str(len(r.content)) and r.json()["items"][0]["value"] == 1


# ---- /bloom ----

def test_bloom_count_is_capped_and_never_500(make_server, alice):
    srv = make_server(bloom_max_count=1000)
    items_in(srv, alice.user, "/pub/bl/", [b"1", b"2", b"3"])
    storage = f"{alice.user}/pub/bl/"
    r = httpx.get(srv.url + "/bloom", params={"id": storage, "count": 1000})
    assert r.status_code == 200
    assert len(base64.b64decode(r.json()["bloomFilter"])) == 1199  # sized for 1000 items
    assert httpx.get(srv.url + "/bloom", params={"id": storage, "count": 1001}).status_code == 400
    for bad in ("200000000", "abc", "1.5", "-1", "9" * 5000, "1e3"):
        r = httpx.get(srv.url + "/bloom", params={"id": storage, "count": bad})
        assert r.status_code == 400, bad
    for bad in (10**13, 1.5, True, -1, "x", [1], 1e300):
        r = httpx.post(srv.url + "/bloom", json={"id": storage, "count": bad})
        assert r.status_code == 400, bad
    # a filter sized for the client's claim is not kept; the one sized for the storage's own items is
    coll = srv.call(lambda: srv.app.extensions["sync"].registry.get(alice.user, "/pub/bl/"))
    assert coll._bloom is None
    r = httpx.get(srv.url + "/bloom", params={"id": storage})
    assert r.status_code == 200 and r.json()["count"] == 3
    assert coll._bloom is not None and len(coll._bloom[1]) == 8  # 3 items: the 64-bit minimum


def test_bloom_cap_is_the_storage_count_when_larger(make_server, alice):
    srv = make_server(bloom_max_count=2)
    items_in(srv, alice.user, "/pub/bc/", [b"1", b"2", b"3", b"4"])
    storage = f"{alice.user}/pub/bc/"
    assert httpx.get(srv.url + "/bloom", params={"id": storage, "count": 4}).status_code == 200
    assert httpx.get(srv.url + "/bloom", params={"id": storage, "count": 5}).status_code == 400


# ---- /sync ----

def test_sync_budget_and_sketch_follow_the_server_count_not_the_client_claim(make_server, alice):
    from engine.sync import wire
    from engine.sync.keys import KeyDeriver, collection_key
    from engine.sync.pysketch import PySketch

    srv = make_server(sync_session_bytes=24 * 1000)
    values = [f"v{i}".encode() for i in range(10)]
    items_in(srv, alice.user, "/pub/sy/", values)
    ckey = collection_key(alice.user, "/pub/sy/")
    derive = KeyDeriver(ckey)
    sk = PySketch(derive.salt, 0)
    for i in range(5000):  # a client claiming a huge set, with thousands of symbols
        sk.add(derive(content_digest(f"c{i}".encode())))
    nsym = 5000
    sk.extend(nsym)
    body = wire.encode_request(wire.SyncRequest(wire.OP_SKETCH, salt=derive.salt, count=10**12,
                                                set_hash=bytes(32), symbols=sk.to_bytes(0, nsym), nsym=nsym))
    r = httpx.post(srv.url + f"/sync/{alice.user}/pub/sy/", content=body)
    assert r.status_code == 200
    resp = wire.decode_response(r.content)
    cap = 2 * 10 + 256
    assert resp.status == wire.MORE and resp.need <= resp.have  # more symbols will not help: exact list
    coll = srv.call(lambda: srv.app.extensions["sync"].registry.get(alice.user, "/pub/sy/"))
    assert len(coll.sketch) <= cap
    service = srv.app.extensions["sync"]
    assert service.sessions.symbols * 24 <= 24 * 1000
    # sessions in all stay under sync_session_bytes: 1000 symbols
    small = wire.encode_request(wire.SyncRequest(wire.OP_SKETCH, salt=derive.salt, count=5000,
                                                 set_hash=bytes(32), symbols=sk.to_bytes(0, 200), nsym=200))
    for _ in range(8):
        assert httpx.post(srv.url + f"/sync/{alice.user}/pub/sy/", content=small).status_code == 200
        assert service.sessions.symbols <= 1000
    # and the real client still gets the right answer (through the exact list when needed)
    from engine.client.sync import reconcile
    res = reconcile(srv.url, f"{alice.user}/pub/sy/", values[:4] + [b"extra"])
    assert sorted(res.items) == sorted(values[4:]) and res.extra == [b"extra"]


# ---- history: /events/ and /events-stream ----

def test_events_page_work_is_bounded_and_the_cursor_moves_on(make_server, alice):
    srv = make_server(history_scan_records=1000)
    rows = [(alice.user, f"/priv/p/{i}", b"x") for i in range(2999)] + [(alice.user, "/pub/the-one", b"y")]
    write_direct(srv, rows)  # seqs 1..2999 private, 3000 public
    before = history.TOTALS.examined
    r = httpx.get(srv.url + "/events/", params={"cursor": 0, "limit": 1})
    assert r.status_code == 200 and r.text == "cursor: 1000"  # the scan budget, exactly: the last seq examined
    assert history.TOTALS.examined - before == 1000
    assert httpx.get(srv.url + "/events/", params={"cursor": 1000, "limit": 1}).text == "cursor: 2000"
    # 2001..3000 is exactly the budget, and the public event is the last of it
    before = history.TOTALS.examined
    r = httpx.get(srv.url + "/events/", params={"cursor": 2000, "limit": 1})
    assert r.text.split("\n") == [f"PUT pubky://{alice.user}/pub/the-one", "cursor: 3000"]
    assert history.TOTALS.examined - before == 1000
    assert httpx.get(srv.url + "/events/", params={"cursor": 3000}).text == ""  # at the head: empty, SPEC 3.5
    # the owner sees their private events, a page of `limit` within the budget
    r = httpx.get(srv.url + "/events/", params={"cursor": 0, "limit": 3},
                  headers={"authorization": alice.auth("GET", "/events/")})
    assert r.text.split("\n")[-1] == "cursor: 3" and len(r.text.split("\n")) == 4
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_reverse_stream_without_limit_is_bounded_by_the_scan_budget(make_server, alice):
    srv = make_server(history_scan_records=1000)
    write_direct(srv, [(alice.user, f"/pub/r/{i}", b"x") for i in range(3000)])
    reader = SSEReader(srv.port, f"/events-stream?user={alice.user}&reverse=true")
    try:
        frames = reader.read_frames(until_end=True, timeout=10)
    finally:
        reader.close()
    cursors = [int(f["data"].split("\n")[1].split(": ")[1]) for f in frames]
    assert cursors == list(range(3000, 2000, -1))  # newest first, exactly the budget
    # the client continues from the last cursor it saw
    reader = SSEReader(srv.port, f"/events-stream?user={alice.user}:{cursors[-1]}&reverse=true&limit=3")
    try:
        frames = reader.read_frames(until_end=True, timeout=10)
    finally:
        reader.close()
    assert [int(f["data"].split("\n")[1].split(": ")[1]) for f in frames] == [2000, 1999, 1998]


def test_forward_stream_over_sparse_history_finds_the_public_event(make_server, alice, bob, monkeypatch):
    from engine.pubsub import subscription

    monkeypatch.setattr(subscription, "CATCHUP_SCAN_RECORDS", 1000)  # several loop turns for this history
    srv = make_server()
    write_direct(srv, [(alice.user, f"/priv/p/{i}", b"x") for i in range(5000)] + [(bob.user, "/pub/z", b"z")])
    before = history.TOTALS.examined
    reader = SSEReader(srv.port, f"/events-stream?user={alice.user}&user={bob.user}")
    try:
        frames = reader.read_frames(until_end=True, timeout=20)
    finally:
        reader.close()
    assert [f["data"].split("\n")[0] for f in frames] == [f"pubky://{bob.user}/pub/z"]
    assert history.TOTALS.examined - before == 5001  # each record once, in C, 1000 per loop turn
    assert httpx.get(srv.url + "/healthz").status_code == 200
