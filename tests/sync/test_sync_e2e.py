"""POST /sync against a real server: differences both ways, the state kept current from writes and deletes,
400 for tampered or truncated bodies with nothing changed, 404 for unknown storages, private storages."""

import random

import httpx
import pytest

from engine.client.sync import reconcile
from engine.http.auth import sign_request
from engine.sync import wire
from engine.sync.keys import collection_key, salt_of
from engine.sync.pysketch import PySketch


def post_items(url, key, dir_path, items):
    target = f"/{key.user}{dir_path}"
    with httpx.Client() as c:
        for it in items:
            r = c.post(url + target, content=it, headers={"authorization": key.auth("POST", target, it)})
            assert r.status_code in (200, 201), r.text


def _items(rng, n, tag):
    return [f"{tag}-{i}-{rng.getrandbits(32)}".encode() for i in range(n)]


def test_sync_differences_both_ways_and_state_follows_writes(server, alice):
    rng = random.Random(1)
    common, server_only, client_only = _items(rng, 150, "c"), _items(rng, 30, "s"), _items(rng, 12, "k")
    post_items(server.url, alice, "/pub/coll/", common + server_only)
    storage = f"{alice.user}/pub/coll/"
    res = reconcile(server.url, storage, common + client_only, server_count=180)
    assert sorted(res.items) == sorted(server_only) and sorted(res.extra) == sorted(client_only)
    assert res.requests == 1 and res.count == 180
    # the collection state now exists: later appends and deletes must keep it exact
    later = _items(rng, 5, "l")
    post_items(server.url, alice, "/pub/coll/", later)
    victim = server_only[0]
    from engine.names import item_name

    target = f"/{alice.user}/pub/coll/{item_name(victim)}"
    r = httpx.delete(server.url + target, headers={"authorization": alice.auth("DELETE", target)})
    assert r.status_code == 204
    # a file that is not an item does not count
    target = f"/{alice.user}/pub/coll/readme.txt"
    assert httpx.put(server.url + target, content=b"x",
                     headers={"authorization": alice.auth("PUT", target, b"x")}).status_code == 201
    res = reconcile(server.url, storage, common + server_only, server_count=res.count)
    assert sorted(res.items) == sorted(later) and res.extra == [victim]
    assert res.count == 150 + 30 - 1 + 5


def _body(storage_user, dir_path, items, m=40):
    from engine.names import content_digest
    from engine.sync.keys import KeyDeriver, set_hash

    ckey = collection_key(storage_user, dir_path)
    derive = KeyDeriver(ckey)
    sk = PySketch(salt_of(ckey), m)
    digests = [content_digest(i) for i in items]
    sk.add_many(derive(d) for d in digests)
    return wire.encode_request(wire.SyncRequest(wire.OP_SKETCH, salt_of(ckey), len(items), set_hash(digests),
                                                symbols=sk.to_bytes(), nsym=m))


def test_tampered_or_truncated_bodies_are_400_and_change_nothing(server, alice):
    rng = random.Random(2)
    items = _items(rng, 40, "c")
    post_items(server.url, alice, "/pub/coll/", items)
    url = f"{server.url}/sync/{alice.user}/pub/coll/"
    good = _body(alice.user, "/pub/coll/", items[:30])
    service = server.app.extensions["sync"]
    assert service.registry.get(alice.user, "/pub/coll/") is not None
    coll = service.registry.collections[(alice.user, "/pub/coll/")]
    before = (coll.version, coll.count, coll.set_hash, len(service.sessions))
    bad_bodies = [good[:n] for n in (0, 1, 10, 54, len(good) // 2, len(good) - 1)]
    for i in rng.sample(range(len(good)), 25):
        b = bytearray(good)
        b[i] ^= 0x10
        bad_bodies.append(bytes(b))
    # a well-tagged body whose symbols are cut mid-symbol, or announce more than they hold
    inner = good[:-8]
    bad_bodies.append(inner[:-3] + wire.tag(inner[:-3]))
    with httpx.Client() as c:
        for body in bad_bodies:
            r = c.post(url, content=body)
            assert r.status_code == 400, (r.status_code, r.text)
            assert r.json()["error"] in ("bad_request", "invalid_name")
        assert (coll.version, coll.count, coll.set_hash, len(service.sessions)) == before
        r = c.post(url, content=good)
        assert r.status_code == 200
        assert wire.decode_response(r.content).status == wire.COMPLETE


def test_unknown_storage_is_404_and_bad_storage_names_400(server, alice):
    body = _body(alice.user, "/pub/none/", [b"a"])
    with httpx.Client() as c:
        r = c.post(f"{server.url}/sync/{alice.user}/pub/none/", content=body)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert c.post(f"{server.url}/sync/{alice.user}/pub/file", content=body).status_code == 400
        assert c.post(f"{server.url}/sync/notauser/pub/x/", content=body).status_code == 400
    with pytest.raises(Exception) as info:
        reconcile(server.url, f"{alice.user}/pub/none/", [b"x"])
    assert getattr(info.value, "status", None) == 404


def test_private_storage_needs_the_owners_signature(server, alice, bob):
    rng = random.Random(3)
    items = _items(rng, 20, "p")
    post_items(server.url, alice, "/priv/notes/", items)
    storage = f"{alice.user}/priv/notes/"
    body = _body(alice.user, "/priv/notes/", items[:10])
    path = f"/sync/{alice.user}/priv/notes/"
    with httpx.Client() as c:
        assert c.post(server.url + path, content=body).status_code == 401
        r = c.post(server.url + path, content=body,
                   headers={"authorization": sign_request(bob.signing_key, "POST", path, body)})
        assert r.status_code == 401
        r = c.post(server.url + path, content=body,
                   headers={"authorization": sign_request(alice.signing_key, "POST", path, b"other")})
        assert r.status_code == 401  # the signature covers the body
        r = c.post(server.url + path, content=body,
                   headers={"authorization": sign_request(alice.signing_key, "POST", path, body)})
        assert r.status_code == 200
    res = reconcile(server.url, storage, items[:10], key=alice.signing_key)
    assert sorted(res.items) == sorted(items[10:])
    # 404 only after auth: an unknown private storage is 401 without the signature
    with httpx.Client() as c:
        assert c.post(f"{server.url}/sync/{alice.user}/priv/none/", content=body).status_code == 401
