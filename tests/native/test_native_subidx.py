"""The prefix hash index (csrc/subidx.c) at the C level, and SubscriptionIndex against the previous radix tries."""

import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.names import encode_user
from engine.native._lib import ffi, lib
from engine.native.trie import SubscriptionIndex, TrieSubscriptionIndex

ALPHABET = st.sampled_from([b"a", b"b", b"/", b"\xc3", b"\x00"])


def _key(draw_list):
    return b"".join(draw_list)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(ALPHABET, max_size=10).map(_key), st.integers(0, 1), st.integers(0, 50)),
                max_size=40),
       st.lists(ALPHABET, max_size=14).map(_key), st.integers(0, 2**64 - 1))
def test_subidx_c_level_on_arbitrary_bytes_matches_reference(entries, key, seed):
    s = ffi.gc(lib.subidxNew(seed), lib.subidxFree)
    buf = ffi.gc(lib.subidxMatchBufNew(4), lib.subidxMatchBufFree)
    ref = set()
    for k, kind, i in entries:
        valid = kind == lib.SUBIDX_EXACT or k.endswith(b"/")
        got = lib.subidxInsert(s, k, len(k), kind, i)
        if not valid:
            assert got == 0 and ffi.errno == 22  # EINVAL: a PREFIX key ends with '/'
            continue
        assert got == ((k, kind, i) not in ref)
        ref.add((k, kind, i))
    for k, kind, i in entries[::2]:
        assert lib.subidxRemove(s, k, len(k), kind, i) == ((k, kind, i) in ref)
        ref.discard((k, kind, i))
    expected = {i for k, kind, i in ref if (key.startswith(k) if kind else key == k)}
    count = ffi.new("size_t *")
    if not lib.subidxMatch(s, key, len(key), buf, count):
        assert lib.subidxMatchBufReserve(buf, count[0])
        assert lib.subidxMatch(s, key, len(key), buf, count)
    got = ffi.unpack(buf.ids, count[0])
    assert len(got) == len(set(got)) and set(got) == expected
    assert lib.subidxSize(s) == len(ref)
    assert lib.subidxKeyCount(s) == len({(k) for k, _, _ in ref})


def test_subidx_prefix_key_must_end_with_slash_and_id_max_is_reserved():
    s = ffi.gc(lib.subidxNew(0), lib.subidxFree)
    assert lib.subidxInsert(s, b"a", 1, lib.SUBIDX_PREFIX, 1) == 0 and ffi.errno == 22
    assert lib.subidxInsert(s, b"", 0, lib.SUBIDX_PREFIX, 1) == 0 and ffi.errno == 22
    assert lib.subidxInsert(s, b"a/", 2, lib.SUBIDX_PREFIX, lib.SUBIDX_NO_ID) == 0 and ffi.errno == 22
    assert lib.subidxInsert(s, b"", 0, lib.SUBIDX_EXACT, 1) == 1
    assert lib.subidxSize(s) == 1


def test_subidx_key_with_more_slashes_than_one_probe_batch():
    key = b"x/" * 100
    with SubscriptionIndex() as idx, TrieSubscriptionIndex() as old:
        u = encode_user(bytes(32))
        for depth in range(1, 101, 3):
            for i in (idx, old):
                assert i.add(depth, f"{u}/{'x/' * depth}*")
        path = "/" + key.decode()
        assert sorted(idx.match(u, path)) == sorted(old.match(u, path)) == list(range(1, 101, 3))


def test_subscription_index_agrees_with_previous_tries_on_a_realistic_workload():
    from engine.bench.match import Workload

    work = Workload(20_000, random.Random(5))
    events = work.events(2_000)
    with SubscriptionIndex() as idx, TrieSubscriptionIndex() as old:
        assert idx.add_many(work.patterns) == old.add_many(work.patterns)
        assert len(idx) == len(old)
        for user, path in events:
            assert sorted(idx.match(user, path)) == sorted(old.match(user, path))
        for sub_id, p in work.patterns[::3]:
            assert idx.remove(sub_id, p) == old.remove(sub_id, p)
        for user, path in events:
            assert sorted(idx.match(user, path)) == sorted(old.match(user, path))


# ---- matcher(table): the hub's call (csrc/pyfast.inc), against match() through cffi ----

MATCH_USERS = [encode_user(bytes([i]) * 32) for i in range(2)]
MATCH_PATHS = st.lists(st.sampled_from(["a", "b", "é", "日本", "x.json"]), max_size=4).map(lambda s: "/" + "/".join(s))


@st.composite
def _match_patterns(draw):
    user = draw(st.sampled_from(MATCH_USERS + ["*"]))
    path = draw(MATCH_PATHS)
    if draw(st.booleans()):
        return "*" if user == "*" and draw(st.booleans()) else f"{user}{path.rstrip('/')}/*"
    return f"{user}{path}"


@pytest.mark.parametrize("cls", [SubscriptionIndex, TrieSubscriptionIndex])
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40), _match_patterns()), max_size=40),
       events=st.lists(st.tuples(st.sampled_from(MATCH_USERS), MATCH_PATHS), min_size=1, max_size=8))
def test_matcher_returns_the_table_objects_of_match_and_agrees_with_cffi(cls, ops, events):
    table = [object() for _ in range(41)]
    with cls(match_capacity=16) as idx:
        f = idx.matcher(table)
        for is_add, sub_id, p in ops:
            (idx.add if is_add else idx.remove)(sub_id, p)
        for user, path in events:
            ids = idx.match(user, path)
            assert sorted(ids) == sorted(idx._match_cffi(user, path))
            assert len(ids) == len(set(ids))
            assert f(user, path) == [table[i] for i in ids]


def test_matcher_reads_the_table_at_each_call_and_checks_its_bounds():
    u = MATCH_USERS[0]
    table = ["zero"]
    with SubscriptionIndex() as idx:
        f = idx.matcher(table)
        idx.add(0, f"{u}/pub/*")
        assert f(u, "/pub/x") == ["zero"]
        idx.add(1, "*/pub/*")
        with pytest.raises(IndexError, match="past the end"):
            f(u, "/pub/x")
        table.append("one")  # the caller's list, seen at the next call
        assert sorted(f(u, "/pub/x")) == ["one", "zero"]
        assert f(u, "/priv/x") == []
        with pytest.raises(TypeError):
            idx.matcher(tuple(table))
        with pytest.raises(TypeError):
            f(None, "/pub/x")
        with pytest.raises(TypeError):
            f(u)
        with pytest.raises(UnicodeEncodeError):
            f(u, "/pub/\ud800")
    with pytest.raises(ValueError, match="closed"):
        f(u, "/pub/x")
    with pytest.raises(ValueError, match="closed"):
        idx.matcher([])


def test_matcher_long_keys_and_many_matches_take_the_heap_paths():
    u = MATCH_USERS[1]
    deep = "/" + "d/" * 400  # a key longer than the 512-byte stack buffer
    table = list(range(1000, 1000 + 3000))
    with SubscriptionIndex(match_capacity=16) as idx:
        idx.add_many((i, f"{u}{deep}*") for i in range(3000))  # more ids than the 64-id stack copy and the buffer
        idx.add(5, f"{u}{deep}x.json")
        got = idx.matcher(table)(u, deep + "x.json")
        assert sorted(got) == table
        assert sorted(idx.match(u, deep + "x.json")) == list(range(3000))


def test_matcher_keeps_the_c_index_alive_until_closed():
    import gc

    u = MATCH_USERS[0]
    idx = SubscriptionIndex()
    idx.add(0, f"{u}/*")
    f = idx.matcher(["sub"])
    del idx
    gc.collect()
    assert f(u, "/pub/x") == ["sub"]  # the matcher holds the cdata; nothing was freed under it
