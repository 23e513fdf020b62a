"""The subscription index (C trie through engine.native.trie) against a small pure-Python reference."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidName
from engine.names import encode_user, parse_pattern
from engine.native._lib import ffi, lib
from engine.native.trie import SubscriptionIndex


class ReferenceIndex:
    """SPEC 3.1 matching, written the obvious way: scan every entry."""

    def __init__(self):
        self.entries = set()  # (sub_id, user or None, path, prefix)

    def add(self, sub_id, p):
        e = (sub_id, p.user, p.path, p.prefix)
        new = e not in self.entries
        self.entries.add(e)
        return new

    def remove(self, sub_id, p):
        e = (sub_id, p.user, p.path, p.prefix)
        if e in self.entries:
            self.entries.remove(e)
            return True
        return False

    def match(self, user, path):
        out = set()
        for sub_id, u, p, prefix in self.entries:
            if u is not None and u != user:
                continue
            if path.startswith(p) if prefix else path == p:
                out.add(sub_id)
        return out


USERS = [encode_user(bytes([i]) * 32) for i in range(3)]
SEGMENTS = ["a", "b", "ab", "é", "日本", "x.json", "pub", "a b"]


@st.composite
def paths(draw):
    segs = draw(st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=4))
    path = "/" + "/".join(segs)
    if segs and draw(st.booleans()):
        path += "/"
    return path


@st.composite
def patterns(draw):
    user = draw(st.sampled_from(USERS + ["*"]))
    path = draw(paths())
    if draw(st.booleans()):
        text = "*" if user == "*" and draw(st.integers(0, 5)) == 0 else f"{user}{path.rstrip('/')}/*"
    else:
        text = f"{user}{path}"
    return parse_pattern(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12), patterns()), max_size=40),
       st.lists(st.tuples(st.sampled_from(USERS), paths()), min_size=1, max_size=12))
def test_trie_matches_reference_with_adds_and_removes_interleaved(ops, events):
    ref = ReferenceIndex()
    with SubscriptionIndex(match_capacity=16) as idx:
        for is_add, sub_id, p in ops:
            if is_add:
                assert idx.add(sub_id, p) == ref.add(sub_id, p)
            else:
                assert idx.remove(sub_id, p) == ref.remove(sub_id, p)
            assert len(idx) == len(ref.entries)
            for user, path in events[:3]:
                got = idx.match(user, path)
                assert len(got) == len(set(got))
                assert set(got) == ref.match(user, path)
        for user, path in events:
            assert set(idx.match(user, path)) == ref.match(user, path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), patterns()), max_size=60), st.sampled_from(USERS), paths())
def test_trie_bulk_add_equals_single_adds(entries, user, path):
    ref = ReferenceIndex()
    with SubscriptionIndex() as idx:
        new = idx.add_many(entries)
        assert new == sum(ref.add(i, p) for i, p in entries)
        assert set(idx.match(user, path)) == ref.match(user, path)


def test_trie_match_dedups_ids_across_patterns():
    u = USERS[0]
    with SubscriptionIndex() as idx:
        for text in [f"{u}/pub/a/b.json", f"{u}/pub/a/*", f"{u}/*", "*/pub/a/*", "*/pub/a/b.json", "*"]:
            assert idx.add(7, parse_pattern(text))
        idx.add(8, parse_pattern("*/pub/*"))
        assert sorted(idx.match(u, "/pub/a/b.json")) == [7, 8]
        assert sorted(idx.match(USERS[1], "/pub/a/b.json")) == [7, 8]
        assert idx.match(USERS[1], "/priv/x") == [7]


def test_trie_prefix_pattern_matches_keys_under_its_directory_only():
    u = USERS[0]
    with SubscriptionIndex() as idx:
        idx.add(1, f"{u}/pub/a/*")
        assert idx.match(u, "/pub/a/b") == [1]
        assert idx.match(u, "/pub/a/") == [1]  # empty-after-prefix
        assert idx.match(u, "/pub/ab") == []
        assert idx.match(u, "/pub/a") == []
        assert idx.match(USERS[1], "/pub/a/b") == []


def test_trie_adding_twice_is_a_noop_and_removing_absent_returns_false():
    with SubscriptionIndex() as idx:
        assert idx.add(3, "*") is True
        assert idx.add(3, "*") is False
        assert len(idx) == 1
        assert idx.remove(3, "*") is True
        assert idx.remove(3, "*") is False
        assert len(idx) == 0


def test_trie_popular_pattern_holds_many_ids_and_grows_the_match_buffer():
    with SubscriptionIndex(match_capacity=16) as idx:
        assert idx.add_many((i, "*") for i in range(5000)) == 5000
        got = idx.match(USERS[0], "/pub/x")
        assert sorted(got) == list(range(5000))
        for i in range(0, 5000, 2):
            assert idx.remove(i, "*")
        assert sorted(idx.match(USERS[0], "/pub/x")) == list(range(1, 5000, 2))


def test_trie_rejects_forbidden_patterns_before_c():
    with SubscriptionIndex() as idx:
        for bad in ["", "*/pub/*/x", "abc/pub/x", f"{USERS[0]}/pub/a*", f"{USERS[0]}/../x", "**", "*/pub//a"]:
            with pytest.raises(InvalidName, match="invalid pattern"):
                idx.add(1, bad)
        assert len(idx) == 0


def test_trie_rejects_bad_ids_and_closed_use():
    idx = SubscriptionIndex()
    with pytest.raises(ValueError):
        idx.add(-1, "*")
    with pytest.raises(ValueError):
        idx.add(2**32 - 1, "*")
    with pytest.raises(TypeError):
        idx.add("1", "*")
    with pytest.raises(TypeError):
        idx.match(None, "/x")
    idx.close()
    idx.close()
    with pytest.raises(ValueError):
        idx.match(USERS[0], "/x")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=12), st.integers(0, 1), st.integers(0, 50)), max_size=40),
       st.binary(max_size=16))
def test_trie_c_level_on_arbitrary_bytes_matches_reference(entries, key):
    t = ffi.gc(lib.trieNew(), lib.trieFree)
    buf = ffi.gc(lib.trieMatchBufNew(4), lib.trieMatchBufFree)
    ref = set()
    for k, kind, i in entries:
        assert lib.trieInsert(t, k, len(k), kind, i) == ((k, kind, i) not in ref)
        ref.add((k, kind, i))
    for k, kind, i in entries[::2]:
        assert lib.trieRemove(t, k, len(k), kind, i) == ((k, kind, i) in ref)
        ref.discard((k, kind, i))
    expected = {i for k, kind, i in ref if (key.startswith(k) if kind else key == k)}
    count = ffi.new("size_t *")
    if not lib.trieMatch(t, key, len(key), buf, count):
        assert lib.trieMatchBufReserve(buf, count[0])
        assert lib.trieMatch(t, key, len(key), buf, count)
    assert sorted(ffi.unpack(buf.ids, count[0])) == sorted(expected)
    assert lib.trieSize(t) == len(ref)


def test_trie_realistic_keys():
    users = [encode_user(os.urandom(32)) for _ in range(20)]
    with SubscriptionIndex() as idx:
        idx.add_many((n, f"{u}/pub/app.example/posts/{n:07d}.json") for n, u in enumerate(users))
        assert idx.match(users[3], "/pub/app.example/posts/0000003.json") == [3]
        assert idx.match(users[3], "/pub/app.example/posts/0000004.json") == []
