"""The seed's API (SPEC 4.1) against a real server: /set canonical JSON, /get by filter, hashes, several
storages and as a live SSE stream, /bloom negotiation with the shared bit vectors, and the error codes."""

import base64
import json

import httpx
import mmh3

from e2e.sse_client import SSEReader
from engine.names import content_digest, content_hash

from .test_sync_e2e import post_items


def set_value(url, key, storage, value):
    body = json.dumps({"value": value}).encode()
    path = f"/set/{storage}"
    return httpx.post(url + path, content=body, headers={"authorization": key.auth("POST", path, body)})


def client_filter(items, nbytes, k=7):
    bits = bytearray(nbytes)
    m = nbytes * 8
    for it in items:
        h = mmh3.hash128(content_digest(it), 0, True, False)
        h1, h2 = h & (2 ** 64 - 1), h >> 64
        for i in range(k):
            j = ((h1 + i * h2) % 2 ** 64) % m
            bits[j // 8] |= 1 << (j % 8)
    return base64.b64encode(bytes(bits)).decode()


def test_set_stores_canonical_json_once(server, alice, vectors):
    storage = f"{alice.user}/pub/seed/"
    for case in vectors["canonical_json"]:
        r = set_value(server.url, alice, storage, case["value"])
        assert r.status_code == 201, r.text
        assert r.json()["hash"] == content_hash(case["canonical"].encode())
        again = set_value(server.url, alice, storage, case["value"])
        assert again.status_code == 200 and again.json() == r.json()
    r = httpx.get(server.url + "/get", params={"id": storage})
    assert [json.dumps(i["value"], sort_keys=True) for i in r.json()["items"]] == \
        [json.dumps(c["value"], sort_keys=True) for c in vectors["canonical_json"]]
    # unsigned, bad JSON, no value
    assert httpx.post(f"{server.url}/set/{storage}", content=b'{"value":1}').status_code == 401
    assert set_value(server.url, alice, storage, 42).status_code == 200
    path = f"/set/{storage}"
    for body in (b"nope", b"[1]", b'{"v":1}', b'{"value":NaN}'):
        r = httpx.post(server.url + path, content=body, headers={"authorization": alice.auth("POST", path, body)})
        assert r.status_code == 400, body


def test_bloom_negotiation_matches_the_shared_vectors(server, alice, vectors):
    storage = f"{alice.user}/pub/bloom/"
    for case in vectors["bloom"]:
        items = [base64.b64decode(i["item_b64"]) for i in case["items"]]
        post_items(server.url, alice, "/pub/bloom/", items)
        r = httpx.get(server.url + "/bloom", params={"id": storage, "count": case["count_for_sizing"]})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["k"] == case["k"] and doc["count"] == 3
        assert doc["bloomFilter"] == case["filter_b64"]
        assert sorted(doc["missing"]) == sorted(content_hash(i) for i in items)
    # the client holds "one": it is not missing; the larger count sizes the server's filter
    one = base64.b64decode("b25l")
    r = httpx.post(server.url + "/bloom", json={"items": {"id": storage, "bloomFilter": client_filter([one], 8),
                                                          "count": 1}})
    assert r.status_code == 200 and content_hash(one) not in r.json()["missing"]
    assert len(r.json()["missing"]) == 2 and len(base64.b64decode(r.json()["bloomFilter"])) == 8
    r = httpx.get(server.url + "/bloom", params={"id": storage, "count": 1000})
    assert len(base64.b64decode(r.json()["bloomFilter"])) == 1199  # ceil(-1000 ln .01 / ln^2 2) bits
    for params in ({"id": storage, "bloomFilter": "!!!"}, {"id": storage, "bloomFilter": ""},
                   {"id": storage, "count": "-1"}, {"id": storage, "count": "x"}, {"id": "nope"}):
        assert httpx.get(server.url + "/bloom", params=params).status_code == 400, params
    assert httpx.get(server.url + "/bloom", params={"id": f"{alice.user}/pub/none/"}).status_code == 404


def test_get_by_filter_by_hashes_and_several_storages(server, alice, bob):
    a = [b'{"n":%d}' % i for i in range(10)]
    b = [b'"b%d"' % i for i in range(3)]
    post_items(server.url, alice, "/pub/a/", a)
    post_items(server.url, bob, "/pub/b/", b)
    sa, sb = f"{alice.user}/pub/a/", f"{bob.user}/pub/b/"
    r = httpx.get(server.url + "/get", params={"id": sa, "bloomFilter": client_filter(a[:7], 16)})
    got = [i["value"]["n"] for i in r.json()["items"]]
    assert got == [7, 8, 9] or set(got) < {7, 8, 9}  # a false positive may hide one (1 %)
    r = httpx.post(server.url + "/get", json={"id": sa, "hashes": [content_hash(a[3]), content_hash(a[1])]})
    assert [i["hash"] for i in r.json()["items"]] == [content_hash(a[3]), content_hash(a[1])]
    r = httpx.get(server.url + "/get", params={"items": json.dumps([sa, sb])})
    items = r.json()["items"]
    assert [i["id"] for i in items] == [sa] * 10 + [sb] * 3 and items[-1]["value"] == "b2"
    r = httpx.post(server.url + "/get", json={"items": [{"id": sb, "bloomFilter": client_filter(b, 8)}]})
    assert r.json()["items"] == []
    assert httpx.get(server.url + "/get", params={"id": f"{alice.user}/pub/none/"}).status_code == 404
    assert httpx.get(server.url + "/get", params={"id": sa, "bloomFilter": "%%%"}).status_code == 400
    assert httpx.get(server.url + "/get", params={"id": sa, "hashes": "[1]"}).status_code == 400
    assert httpx.get(server.url + "/get").status_code == 400


def test_private_storage_get_needs_owner_signature(server, alice, bob):
    post_items(server.url, alice, "/priv/p/", [b"1", b"2"])
    storage = f"{alice.user}/priv/p/"
    assert httpx.get(server.url + "/get", params={"id": storage}).status_code == 401
    assert httpx.get(server.url + "/get", params={"id": storage},
                     headers={"authorization": bob.auth("GET", "/get")}).status_code == 401
    r = httpx.get(server.url + "/get", params={"id": storage}, headers={"authorization": alice.auth("GET", "/get")})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    # unknown private storage: 401 before 404
    assert httpx.get(server.url + "/get", params={"id": f"{alice.user}/priv/none/"}).status_code == 401


def test_get_as_sse_sends_the_set_then_live_items_then_end(server, alice):
    first = [b"1", b"2", b"3"]
    post_items(server.url, alice, "/pub/live/", first)
    storage = f"{alice.user}/pub/live/"
    reader = SSEReader(server.port, f"/get?id={storage}&limit=5", {"Accept": "text/event-stream"})
    try:
        frames = reader.read_frames(3, timeout=5)
        assert [json.loads(f["data"])["value"] for f in frames[:3]] == [1, 2, 3]
        post_items(server.url, alice, "/pub/live/", [b"4", b"2", b"5", b"6"])  # "2" again: no new item
        frames = reader.read_frames(6, timeout=5, until_end=True)
        kinds = [f["event"] for f in frames]
        assert kinds == ["item"] * 5 + ["end"]
        assert [json.loads(f["data"])["value"] for f in frames[:5]] == [1, 2, 3, 4, 5]
        end = json.loads(frames[-1]["data"])
        assert end["reason"] == "limit" and end["last"] == frames[4]["id"]
    finally:
        reader.close()
    reader = SSEReader(server.port, f"/get?id={storage}&live=false", {"Accept": "text/event-stream"})
    try:
        frames = reader.read_frames(timeout=5, until_end=True)
        assert [f["event"] for f in frames] == ["item"] * 6 + ["end"]
        assert json.loads(frames[-1]["data"])["reason"] == "history"
    finally:
        reader.close()
    reader = SSEReader(server.port, f"/get?id={alice.user}/pub/none/", {"Accept": "text/event-stream"})
    try:
        assert reader.head() == 404
    finally:
        reader.close()
