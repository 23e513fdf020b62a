"""keyspace: put/get/delete, listing order and cursors, items, listeners, rebuild at open, retention."""

import pytest

from engine.errors import InvalidName, ValueTooLarge
from engine.keyspace import Keyspace
from engine.log.record import DEL, PUT
from engine.log.store import Log
from engine.names import content_digest, item_name


def test_keyspace_put_get_overwrite_delete(open_ks, users):
    ks = open_ks()
    u = users[0]
    rec, created = ks.put(u, "/pub/a.json", b'{"a":1}', "application/json")
    assert created and rec.seq == 1
    e = ks.get(u, "/pub/a.json")
    assert (e.seq, e.size, e.content_type, e.digest) == (1, 7, "application/json", content_digest(b'{"a":1}'))
    assert ks.read_value(e) == b'{"a":1}'
    rec2, created = ks.put(u, "/pub/a.json", b"x")
    assert not created and rec2.seq == 2
    assert ks.get(u, "/pub/a.json").content_type == "application/octet-stream"
    assert ks.count == 1
    d = ks.delete(u, "/pub/a.json")
    assert d.kind == DEL and d.seq == 3
    assert ks.get(u, "/pub/a.json") is None
    assert ks.delete(u, "/pub/a.json") is None
    assert ks.log.last_seq == 3  # no record for a missing key
    assert ks.count == 0


def test_keyspace_bad_input_changes_nothing(open_ks, users):
    ks = open_ks(max_value_bytes=10)
    u = users[0]
    ks.put(u, "/pub/a", b"1")
    with pytest.raises(ValueTooLarge):
        ks.put(u, "/pub/b", b"x" * 11)
    with pytest.raises(InvalidName):
        ks.put(u, "/pub/dir/", b"x")
    with pytest.raises(InvalidName):
        ks.put(u, "/pub/../x", b"x")
    with pytest.raises(InvalidName):
        ks.put("nope", "/pub/x", b"x")
    assert ks.count == 1 and ks.log.last_seq == 1
    assert ks.put(u, "/pub/c", b"ok")[0].seq == 2


def test_keyspace_list_is_lexicographic_by_bytes_with_cursor_limit_reverse(open_ks, users):
    ks = open_ks()
    u = users[0]
    paths = ["/pub/d/a", "/pub/d/b/c", "/pub/d/b/a", "/pub/d/é", "/pub/d/Z", "/pub/d0", "/pub/e", "/pub/d/~"]
    for p in paths:
        ks.put(u, p, p.encode())
    inside = sorted((p for p in paths if p.startswith("/pub/d/")), key=lambda p: p.encode())
    assert ks.list(u, "/pub/d/") == inside
    assert ks.list(u, "/pub/d") == inside
    assert ks.list(u, "/pub/d/", limit=2) == inside[:2]
    assert ks.list(u, "/pub/d/", cursor=inside[1], limit=2) == inside[2:4]
    assert ks.list(u, "/pub/d/", reverse=True) == inside[::-1]
    assert ks.list(u, "/pub/d/", reverse=True, cursor=inside[3], limit=2) == [inside[2], inside[1]]
    assert ks.list(u, "/pub/d/", cursor=f"pubky://{u}{inside[0]}") == inside[1:]
    assert ks.list(u, "/pub/d/", cursor="/pub/d/b") == inside[2:]  # a cursor need not exist
    assert ks.list(u, "/pub/zzz/") == []
    assert ks.list(users[1], "/pub/") == []
    ks.delete(u, "/pub/d/b/a")
    ks.put(u, "/pub/d/aa", b"new")
    assert ks.list(u, "/pub/d/")[:3] == ["/pub/d/Z", "/pub/d/a", "/pub/d/aa"]


def test_keyspace_items_are_item_named_direct_children_in_append_order(open_ks, users):
    ks = open_ks()
    u = users[0]
    bodies = [b"zeta", b"alpha", b"mid"]
    for b in bodies:
        ks.put(u, "/pub/coll/" + item_name(b), b)
    ks.put(u, "/pub/coll/readme.txt", b"not an item")
    ks.put(u, "/pub/coll/sub/" + item_name(b"deep"), b"deep")
    got = ks.items(u, "/pub/coll/")
    assert [ks.read_value(e) for _p, e in got] == bodies
    assert [p for p, _e in got] == ["/pub/coll/" + item_name(b) for b in bodies]


def test_keyspace_listener_sees_changes_after_the_index(open_ks, users):
    ks = open_ks()
    u = users[0]
    seen = []
    ks.add_listener(lambda kind, user, path, rec: seen.append((kind, path, rec.seq, ks.get(user, path) is not None)))
    ks.put(u, "/pub/a", b"1")
    ks.delete(u, "/pub/a")
    ks.delete(u, "/pub/missing")
    assert seen == [(PUT, "/pub/a", 1, True), (DEL, "/pub/a", 2, False)]


def test_keyspace_rebuilds_from_the_log_at_open(open_ks, users, tmp_path):
    ks = open_ks()
    model = {}
    for i in range(300):
        u = users[i % 3]
        p = f"/pub/k{i % 37}"
        if i % 7 == 3:
            ks.delete(u, p)
            model.pop((u, p), None)
        else:
            ks.put(u, p, str(i).encode())
            model[(u, p)] = str(i).encode()
    ks.close()
    ks = open_ks()
    assert ks.count == len(model)
    for (u, p), v in model.items():
        assert ks.read_value(ks.get(u, p)) == v
    # Keyspace(log) over an already open log builds the same index
    ks.close()
    log = Log.open(str(tmp_path / "ks"), segment_bytes=8192)
    try:
        ks2 = Keyspace(log)
        assert ks2.count == len(model)
        assert all(ks2.read_value(ks2.get(u, p)) == v for (u, p), v in model.items())
    finally:
        log.close()


def test_keyspace_retention_keeps_latest_value_of_live_keys(open_ks, users):
    ks = open_ks()
    u = users[0]
    for i in range(200):
        ks.put(u, f"/pub/k{i % 10}", f"{i}".encode() * 20)
    ks.put(u, "/pub/gone", b"x")
    ks.delete(u, "/pub/gone")
    for i in range(100):
        ks.put(u, f"/pub/fresh{i}", b"f" * 50)
    before = {p: ks.read_value(ks.get(u, p)) for p in ks.list(u, "/", limit=1000)}
    first_before = ks.log.first_seq
    res = ks.apply_retention(max_bytes=1)
    assert ks.log.first_seq > first_before
    assert res["removed"] + res["compacted"] >= 1
    after = {p: ks.read_value(ks.get(u, p)) for p in ks.list(u, "/", limit=1000)}
    assert after == before
    ks.close()
    ks = open_ks()
    assert {p: ks.read_value(ks.get(u, p)) for p in ks.list(u, "/", limit=1000)} == before
    assert ks.get(u, "/pub/gone") is None
