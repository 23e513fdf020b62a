"""The real client against the real SyncService (in process, httpx.MockTransport): random collections and
random differences both ways, forced decode failures recovered, and never a wrong "complete"."""

import random

import pytest

from engine.client.sync import LocalCollection, reconcile
from engine.names import encode_user
from engine.sync import wire
from engine.sync.server import Sessions, SyncService

from .helpers import FakeRegistry, mock_http

USER = encode_user(bytes(range(32)))
STORAGE = f"{USER}/pub/coll/"


def _setup(server_items):
    reg = FakeRegistry()
    coll = reg.collection(USER, "/pub/coll/")
    for it in server_items:
        reg.add(coll, it)
    service = SyncService(reg)
    calls = []
    return reg, coll, service, calls, mock_http(service, calls)


def _items(rng, n, tag):
    return [f"{tag}-{i}-{rng.getrandbits(32)}".encode() for i in range(n)]


@pytest.mark.parametrize("seed", range(12))
def test_random_differences_both_ways_reconcile_exactly(seed):
    rng = random.Random(seed)
    common = _items(rng, rng.randrange(0, 400), "c")
    server_only = _items(rng, rng.choice([0, 1, 3, 20, 150]), "s")
    client_only = _items(rng, rng.choice([0, 1, 5, 40]), "k")
    _reg, coll, _service, calls, http = _setup(common + server_only)
    hint = coll.count if rng.random() < 0.7 else None
    res = reconcile("http://test", STORAGE, common + client_only, server_count=hint, http=http)
    assert sorted(res.items) == sorted(server_only)
    assert sorted(res.extra) == sorted(client_only)
    assert res.count == coll.count and res.set_hash == coll.set_hash
    assert res.fallback is None
    assert res.requests == len(calls)


def test_one_round_trip_and_upload_budget_when_the_hint_is_right():
    rng = random.Random(5)
    for d in (1, 10, 100, 500):
        common = _items(rng, 2000, "c")
        missing = _items(rng, d, "m")
        _reg, coll, _svc, calls, http = _setup(common + missing)
        res = reconcile("http://test", STORAGE, common, server_count=coll.count, http=http)
        assert len(res.items) == d and res.requests == 1
        assert res.bytes_sent <= 24 * d + 1024, (d, res.bytes_sent)


def test_undersized_sketch_fails_to_decode_and_recovers_with_more_symbols():
    rng = random.Random(9)
    common = _items(rng, 300, "c")
    server_only = _items(rng, 200, "s")
    client_only = _items(rng, 100, "k")
    _reg, coll, _svc, calls, http = _setup(common + server_only)
    # a wrong hint (equal counts) makes the first sketch far too small for 300 differences
    res = reconcile("http://test", STORAGE, common + client_only, server_count=len(common + client_only),
                    http=http)
    assert calls[0][1].status == wire.MORE and calls[0][1].need > calls[0][0].nsym
    assert all(r.op == wire.OP_MORE for r, _ in calls[1:])  # continued, not restarted
    assert sorted(res.items) == sorted(server_only) and sorted(res.extra) == sorted(client_only)
    assert res.fallback is None and res.requests <= 4
    # only the further symbols were sent: total stays near the ~1.4 symbols per difference of one good request
    assert res.symbols <= wire.symbols_for(300) * 1.6


def test_expired_session_restarts_and_still_completes():
    rng = random.Random(2)
    common = _items(rng, 100, "c")
    server_only = _items(rng, 120, "s")
    reg, coll, _svc, calls, _ = _setup(common + server_only)
    service = SyncService(reg, Sessions(ttl=-1))  # every session is gone by the next request
    http = mock_http(service, calls)
    res = reconcile("http://test", STORAGE, common, server_count=len(common), http=http)
    assert any(resp.status == wire.RESTART for _, resp in calls)
    assert sorted(res.items) == sorted(server_only)


def test_key_collision_never_reports_a_wrong_set_and_falls_back_to_the_list(monkeypatch):
    rng = random.Random(4)
    common = _items(rng, 50, "c")
    server_only = _items(rng, 5, "s")
    client_only = _items(rng, 5, "k")
    reg, coll, service, calls, http = _setup(common + server_only)
    # make a client-only item and a server-only item share a 64-bit key: both cancel in the sketch difference
    local = LocalCollection(STORAGE, common + client_only)
    from engine.names import content_digest

    target = coll.derive(content_digest(server_only[0]))
    victim = content_digest(client_only[0])
    real = local.derive

    def forged(digest, _real=real):
        return target if digest == victim else _real(digest)

    local = LocalCollection.__new__(LocalCollection)
    LocalCollection.__init__(local, STORAGE)
    local.derive = forged
    for it in common + client_only:
        local.add(it)
    res = reconcile("http://test", STORAGE, local, server_count=coll.count, http=http)
    assert sorted(res.items) == sorted(server_only) and sorted(res.extra) == sorted(client_only)
    assert res.fallback is not None  # verified by set hash, recovered by the exact list


def test_empty_client_gets_everything_in_one_small_request():
    rng = random.Random(1)
    items = _items(rng, 300, "c")
    _reg, coll, _svc, calls, http = _setup(items)
    res = reconcile("http://test", STORAGE, [], http=http)
    assert sorted(res.items) == sorted(items) and res.requests == 1 and res.bytes_sent < 400


def test_equal_sets_answer_complete_with_nothing():
    rng = random.Random(8)
    items = _items(rng, 100, "c")
    _reg, coll, _svc, calls, http = _setup(items)
    res = reconcile("http://test", STORAGE, items, http=http)
    assert res.items == [] and res.extra == [] and res.requests == 1 and res.count == 100


def test_collection_sketch_stays_equal_to_a_fresh_one_through_adds_and_removes():
    from engine.native.sketch import Sketch

    rng = random.Random(6)
    reg = FakeRegistry()
    coll = reg.collection(USER, "/pub/coll/")
    digests = [reg.add(coll, it) for it in _items(rng, 300, "c")]
    coll.ensure_symbols(256)
    for d in rng.sample(digests, 120):
        assert coll.remove(d)
        digests.remove(d)
    for it in _items(rng, 50, "n"):
        digests.append(reg.add(coll, it))
    fresh = Sketch.from_keys([coll.derive(d) for d in digests], len(coll.sketch), coll.salt)
    assert coll.sketch.to_bytes() == fresh.to_bytes()
    from engine.sync.keys import set_hash

    assert coll.count == len(digests) and coll.set_hash == set_hash(digests)
    assert coll.live_digests() == b"".join(digests)
