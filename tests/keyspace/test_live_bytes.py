"""Per-user live bytes from the key index (Keyspace.live_bytes, put_guard): what quotas are measured with."""

import pytest

from engine.errors import QuotaExceeded
from engine.policy.quota import Quota


def test_live_bytes_follow_puts_overwrites_and_deletes(open_ks, users):
    ks = open_ks()
    a, b = users[0], users[1]
    assert ks.live_bytes(a) == 0
    ks.put(a, "/pub/x", b"12345")
    assert ks.live_bytes(a) == 5  # computed from the index
    ks.put(a, "/pub/y", b"123")
    ks.put(a, "/pub/x", b"1")  # kept current by the write path from here on
    assert ks.live_bytes(a) == 4
    ks.delete(a, "/pub/y")
    assert ks.live_bytes(a) == 1 and ks.user_keys(a) == 1
    ks.put(b, "/pub/z", b"zz")
    assert ks.live_bytes(b) == 2 and ks.live_bytes(a) == 1
    ks.delete(a, "/pub/x")
    assert ks.live_bytes(a) == 0 and not ks.has_user(a)
    ks.put(a, "/pub/again", b"abc")
    assert ks.live_bytes(a) == 3


def test_live_bytes_survive_reopen_and_retention(open_ks, tmp_path, users):
    ks = open_ks()
    u = users[0]
    for i in range(200):
        ks.put(u, f"/pub/k{i % 7}", bytes(100 + i))
    expected = sum(100 + i for i in range(193, 200))
    assert ks.live_bytes(u) == expected
    ks.apply_retention(0, 1)
    assert ks.log.first_seq > 1  # retention compacted: live values were copied forward
    assert ks.live_bytes(u) == expected
    ks.close()
    assert open_ks().live_bytes(u) == expected


def test_the_put_guard_refuses_before_anything_is_appended(open_ks, users):
    ks = open_ks()
    u = users[0]
    ks.put_guard = Quota(10)
    ks.put(u, "/pub/a", b"x" * 6)
    last = ks.log.last_seq
    with pytest.raises(QuotaExceeded):
        ks.put(u, "/pub/b", b"x" * 5)
    assert ks.log.last_seq == last and ks.get(u, "/pub/b") is None and ks.live_bytes(u) == 6
    ks.put(u, "/pub/b", b"x" * 4)  # exactly at the quota
    ks.put(u, "/pub/a", b"y" * 6)  # same size: passes at the limit
    assert ks.live_bytes(u) == 10
