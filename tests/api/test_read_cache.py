"""engine/api/read_cache.py: exact (an entry is served only while its key still points at its record), bounded
(framed bytes never past the budget, least recently served first out), and checked against the real key index."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.read_cache import ITEM_FRACTION, PROTECTED_SHARE, ReadCache
from engine.names import encode_user

USER = encode_user(b"\x05" * 32)


class Locations:
    """A stand-in key index: (user, path) -> location."""

    def __init__(self):
        self.at: dict[tuple[bytes, bytes], int] = {}

    def __call__(self, user_b, path_b):
        return self.at.get((user_b, path_b))


def keep(cache: ReadCache, target: bytes, tag_, data: bytes) -> None:
    """Store as the connection does after a second miss: the first store only tells the doorkeeper."""
    cache.store(target, tag_, data)
    cache.store(target, tag_, data)


def tag(index: Locations, path: bytes, loc: int):
    index.at[(b"u", path)] = loc
    return (b"u", path, loc)


def test_read_cache_misses_until_stored_then_hits_with_the_same_bytes():
    index = Locations()
    cache = ReadCache(1 << 20, index)
    assert cache.lookup(b"/t") is None and cache.misses == 1
    keep(cache, b"/t", tag(index, b"/p", 7), b"HTTP/1.1 200 OK\r\n\r\nv")
    assert cache.lookup(b"/t") == b"HTTP/1.1 200 OK\r\n\r\nv"
    assert (cache.hits, cache.misses, cache.stale, len(cache), cache.bytes) == (1, 1, 0, 1, 20)


@pytest.mark.parametrize("change", ["overwritten", "deleted"])
def test_read_cache_entry_goes_stale_when_its_key_changes(change):
    index = Locations()
    cache = ReadCache(1 << 20, index)
    keep(cache, b"/t", tag(index, b"/p", 7), b"old")
    if change == "overwritten":
        index.at[(b"u", b"/p")] = 8
    else:
        del index.at[(b"u", b"/p")]
    assert cache.lookup(b"/t") is None
    assert (cache.stale, cache.misses, len(cache), cache.bytes) == (1, 1, 0, 0)
    assert cache.lookup(b"/t") is None and cache.stale == 1  # the stale entry was dropped, not kept


def test_read_cache_budget_edge_evicts_least_recently_served_first():
    index = Locations()
    item = 1024 // ITEM_FRACTION  # the largest item a 1 KiB budget keeps
    cache = ReadCache(1024, index)
    for i in range(ITEM_FRACTION):  # exactly the budget
        keep(cache, b"/%d" % i, tag(index, b"/p%d" % i, i), b"x" * item)
    assert cache.bytes == 1024 and len(cache) == ITEM_FRACTION and cache.evicted == 0
    assert cache.lookup(b"/0") is not None  # served: now the most recent
    keep(cache, b"/new", tag(index, b"/new", 99), b"y")  # one byte past the budget
    assert cache.evicted == 1 and cache.bytes == 1024 - item + 1
    assert cache.lookup(b"/1") is None  # the least recently served went
    assert cache.lookup(b"/0") is not None and cache.lookup(b"/new") == b"y"


def test_read_cache_a_scan_of_new_keys_does_not_flush_keys_served_twice():
    """A reader that gets every key admitted (four budgets' worth) churns probation only."""
    index = Locations()
    cache = ReadCache(100 * 100, index)
    hot = [b"/hot%d" % i for i in range(40)]  # 4,000 bytes: inside protected's 8,000
    for i, target in enumerate(hot):
        keep(cache, target, tag(index, target, i), b"h" * 100)
        assert cache.lookup(target) is not None  # served again: protected
    for i in range(400):
        target = b"/scan%d" % i
        keep(cache, target, tag(index, target, 1000 + i), b"s" * 100)
    assert all(cache.lookup(target) == b"h" * 100 for target in hot)
    assert cache.bytes <= cache.max_bytes and cache.evicted == 40 + 400 - 100


def test_read_cache_protected_overflow_goes_back_to_probation_not_out():
    index = Locations()
    cache = ReadCache(1000, index, max_item=100)
    for i in range(10):  # 1,000 bytes served twice: more than protected's share
        target = b"/p%d" % i
        keep(cache, target, tag(index, target, i), b"x" * 100)
        cache.lookup(target)
    assert cache.protected_bytes <= 1000 * PROTECTED_SHARE and len(cache) == 10 and cache.evicted == 0
    assert all(cache.lookup(b"/p%d" % i) is not None for i in range(10))


def test_read_cache_admits_an_answer_on_its_second_miss_and_forgets_first_misses_at_the_bound():
    index = Locations()
    cache = ReadCache(1 << 20, index)
    cache.max_seen = 3
    cache.store(b"/a", tag(index, b"/a", 1), b"a")
    assert cache.lookup(b"/a") is None and len(cache) == 0  # a first miss keeps nothing
    cache.store(b"/a", tag(index, b"/a", 1), b"a")
    assert cache.lookup(b"/a") == b"a"
    for t in (b"/b", b"/c", b"/d"):  # three first misses fill the doorkeeper ...
        cache.store(t, tag(index, t, 2), b"x")
    cache.store(b"/e", tag(index, b"/e", 3), b"e")  # ... and a fourth empties it first
    cache.store(b"/b", tag(index, b"/b", 2), b"x")  # so /b counts as new again
    assert cache.lookup(b"/b") is None and len(cache) == 1
    cache.store(b"/e", tag(index, b"/e", 3), b"e")  # /e was remembered after the emptying
    assert cache.lookup(b"/e") == b"e"


def test_read_cache_doorkeeper_stays_bounded_when_entries_go_stale():
    index = Locations()
    cache = ReadCache(1 << 20, index)
    cache.max_seen = 4
    for i in range(10):
        t = b"/s%d" % i
        keep(cache, t, tag(index, t, 1), b"v")
        index.at[(b"u", t)] = 2
        assert cache.lookup(t) is None
        assert len(cache._seen) <= 4


def test_read_cache_a_stale_answer_is_replaced_on_its_next_miss():
    index = Locations()
    cache = ReadCache(1 << 20, index)
    keep(cache, b"/t", tag(index, b"/p", 1), b"v1")
    index.at[(b"u", b"/p")] = 2
    assert cache.lookup(b"/t") is None and cache.stale == 1
    cache.store(b"/t", (b"u", b"/p", 2), b"v2")  # once: the target was worth keeping before
    assert cache.lookup(b"/t") == b"v2"


def test_read_cache_keeps_an_item_at_the_size_limit_and_not_one_byte_over():
    index = Locations()
    cache = ReadCache(64 * ITEM_FRACTION, index)
    keep(cache, b"/edge", tag(index, b"/edge", 1), b"e" * 64)
    keep(cache, b"/over", tag(index, b"/over", 2), b"o" * 65)
    assert cache.lookup(b"/edge") == b"e" * 64
    assert cache.lookup(b"/over") is None and cache.bytes == 64


def test_read_cache_storing_a_target_again_replaces_its_bytes_in_the_count():
    index = Locations()
    cache = ReadCache(1 << 20, index)
    keep(cache, b"/t", tag(index, b"/p", 1), b"a" * 10)
    cache.store(b"/t", tag(index, b"/p", 2), b"b" * 3)
    assert cache.bytes == 3 and len(cache) == 1 and cache.lookup(b"/t") == b"bbb"
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_read_cache_needs_a_positive_budget():
    with pytest.raises(ValueError):
        ReadCache(0, Locations())


@pytest.mark.parametrize("header", [b"authorization", b"if-none-match", b"origin"])
def test_read_cache_plain_requests_carry_no_header_the_answer_depends_on(header):
    assert ReadCache.plain({b"host": b"h", b"user-agent": b"x", b"accept": b"*/*"})
    assert not ReadCache.plain({b"host": b"h", header: b"v"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["store", "store twice", "lookup", "move"]), st.integers(0, 5),
                          st.integers(1, 41)), max_size=60))
def test_read_cache_matches_a_dict_model_within_its_budget(ops):
    """Against a model: every hit returns what was last stored for a target whose key has not moved since,
    and the bytes held never pass the budget."""
    index = Locations()
    cache = ReadCache(100, index, max_item=40)  # room for 2 to 100 answers: evictions happen
    stored: dict[bytes, tuple[int, bytes]] = {}
    next_loc = 1
    for op, k, size in ops:
        target, path = b"/t%d" % k, b"/p%d" % k
        if op.startswith("store"):
            next_loc += 1
            index.at[(b"u", path)] = next_loc
            data = bytes([k]) * size
            for _ in range(2 if op == "store twice" else 1):
                cache.store(target, (b"u", path, next_loc), data)
            stored[target] = (next_loc, data)
            got = cache.lookup(target)
            assert got in (data, None)
            if op == "store twice":
                assert got == (data if size <= 40 else None)  # admitted, and the newest is never evicted
        elif op == "move":
            next_loc += 1
            index.at[(b"u", path)] = next_loc
        else:
            got = cache.lookup(target)
            if got is not None:
                loc, data = stored[target]
                assert got == data and index.at[(b"u", path)] == loc
        assert 0 <= cache.bytes <= cache.max_bytes
        held = [*cache._probation.values(), *cache._protected.values()]
        assert all(len(e[3]) <= 40 for e in held)
        assert cache.bytes == sum(len(e[3]) for e in held)
        assert cache.protected_bytes == sum(len(e[3]) for e in cache._protected.values())
        assert cache.protected_bytes <= cache.max_protected or len(cache._protected) == 1


def test_read_cache_over_the_real_index_misses_after_put_delete_and_retention_move(tmp_path):
    from engine.keyspace import Keyspace

    ks = Keyspace.open(str(tmp_path / "ks"), segment_bytes=8192)
    try:
        cache = ReadCache(1 << 20, ks.location)

        def remember(path):
            entry = ks.get(USER, path)
            keep(cache, path.encode(), (*ks.key_bytes(USER, path), entry.loc), bytes(ks.read_value(entry)))

        ks.put(USER, "/pub/a", b"one")
        remember("/pub/a")
        assert cache.lookup(b"/pub/a") == b"one"
        ks.put(USER, "/pub/a", b"one")  # the same bytes again are a new record: its answer is framed anew
        assert cache.lookup(b"/pub/a") is None
        remember("/pub/a")
        ks.delete(USER, "/pub/a")
        assert cache.lookup(b"/pub/a") is None
        ks.put(USER, "/pub/kept", b"k" * 100)
        remember("/pub/kept")
        for i in range(300):  # fill sealed segments so retention rewrites the one holding /pub/kept
            ks.put(USER, f"/pub/churn{i % 5}", b"c" * 100)
        loc = ks.get(USER, "/pub/kept").loc
        ks.apply_retention(max_bytes=1)
        assert ks.get(USER, "/pub/kept").loc != loc  # retention moved the record
        assert cache.lookup(b"/pub/kept") is None and cache.stale == 3
    finally:
        ks.close()
