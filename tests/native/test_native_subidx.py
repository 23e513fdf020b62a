"""The prefix hash index (csrc/subidx.c) at the C level, and SubscriptionIndex against the previous radix tries."""

import random

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
