"""The SPEC 4.1 Bloom filter: shared vectors, set semantics, union, serialisation, bad input."""

import base64
import math
import os

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.native.bloom import BloomFilter, bytes_for_count
from engine.native.hashing import murmur3_x64_128


def digest(item: bytes) -> bytes:
    return blake3.blake3(item).digest()


def test_bloom_matches_shared_vectors(vectors):
    for case in vectors["bloom"]:
        with BloomFilter.for_count(case["count_for_sizing"], k=case["k"]) as f:
            assert f.m == case["m_bits"]
            for item in case["items"]:
                d = digest(base64.b64decode(item["item_b64"]))
                h1, h2 = murmur3_x64_128(d)
                assert (h1, h2) == (item["h1"] % 2**64, item["h2"] % 2**64)
                assert f.positions(d) == item["bits"]
                f.add(d)
            assert base64.b64encode(f.to_bytes()).decode() == case["filter_b64"]
            g = BloomFilter.from_bytes(base64.b64decode(case["filter_b64"]), case["k"])
            for item in case["items"]:
                assert digest(base64.b64decode(item["item_b64"])) in g


@pytest.mark.parametrize("n", [0, 1, 3, 6, 7, 100, 1000, 123457])
def test_bloom_sizing_follows_spec_formula(n):
    bits = max(64, math.ceil(-n * math.log(0.01) / math.log(2) ** 2))
    assert bytes_for_count(n) == (bits + 7) // 8
    assert BloomFilter.for_count(n).m == 8 * ((bits + 7) // 8)


@settings(max_examples=50, deadline=None)
@given(st.sets(st.binary(max_size=20), max_size=60), st.sets(st.binary(max_size=20), max_size=60))
def test_bloom_has_no_false_negatives_and_union_is_set_union(xs, ys):
    n = len(xs | ys)
    a, b = BloomFilter.for_count(n), BloomFilter.for_count(n)
    for x in xs:
        a.add(digest(x))
    b.add_many(b"".join(digest(y) for y in ys))
    u = a.union(b)
    for x in xs:
        assert digest(x) in a and digest(x) in u
    for y in ys:
        assert digest(y) in b and digest(y) in u
    assert b.contains_many(b"".join(digest(y) for y in ys)) == [True] * len(ys)
    assert BloomFilter.from_bytes(u.to_bytes()).to_bytes() == u.to_bytes()
    expected = bytes(p | q for p, q in zip(a.to_bytes(), b.to_bytes()))
    assert u.to_bytes() == expected


def test_bloom_false_positive_rate_is_near_target():
    f = BloomFilter.for_count(2000)
    f.add_many(b"".join(digest(i.to_bytes(4, "big")) for i in range(2000)))
    trials = 20000
    hits = sum(digest(b"other" + i.to_bytes(4, "big")) in f for i in range(trials))
    assert hits / trials < 0.02


def test_bloom_rejects_bad_input():
    f = BloomFilter.for_count(10)
    with pytest.raises(ValueError):
        f.add(b"short")
    with pytest.raises(TypeError):
        f.add("text")
    with pytest.raises(ValueError):
        f.add_many(b"x" * 33)
    with pytest.raises(ValueError):
        BloomFilter.from_bytes(b"1234567")
    with pytest.raises(ValueError):
        BloomFilter.from_bytes(b"12345678", k=0)
    with pytest.raises(ValueError):
        bytes_for_count(10, fp=1.5)
    with pytest.raises(ValueError):
        f.union(BloomFilter(16))


def test_bloom_close_is_idempotent_and_closed_filter_refuses_use():
    with BloomFilter(8) as f:
        f.add(os.urandom(32))
    f.close()
    with pytest.raises(ValueError):
        f.to_bytes()
