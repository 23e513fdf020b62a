"""Rateless IBLT sketches (engine.native.sketch) against Python set arithmetic."""

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.native.sketch import Sketch, SketchEncoder, symbol_wire_size

keys64 = st.integers(0, 2**64 - 1)


def decode_until_complete(a_keys, b_keys, salt=0):
    """Grow the prefix until it decodes, as a streaming client would."""
    ea, eb = SketchEncoder(a_keys, 16, salt), SketchEncoder(b_keys, 16, salt)
    m = 16
    while True:
        res = (ea.prefix(m) - eb.prefix(m)).decode()
        if res.complete or m > 4 * (len(a_keys) + len(b_keys)) + 64:
            return res, m
        m *= 2


@settings(max_examples=60, deadline=None)
@given(st.sets(keys64, max_size=80), st.sets(keys64, max_size=80), st.sets(keys64, max_size=200),
       st.integers(0, 2**64 - 1))
def test_sketch_decodes_exactly_the_symmetric_difference(only_a, only_b, common, salt):
    only_b -= only_a
    common -= only_a | only_b
    res, _ = decode_until_complete(list(only_a | common), list(only_b | common), salt)
    assert res.complete
    assert set(res.only_a) == only_a and len(res.only_a) == len(only_a)
    assert set(res.only_b) == only_b and len(res.only_b) == len(only_b)


@settings(max_examples=60, deadline=None)
@given(st.sets(keys64, min_size=1, max_size=300), st.integers(1, 40))
def test_sketch_never_claims_complete_when_wrong(diff, m):
    s = Sketch.from_keys(list(diff), m)
    res = s.decode()
    if res.complete:
        assert set(res.only_a) == diff and not res.only_b


def test_sketch_is_order_independent_and_prefix_stable():
    keys = [random.Random(5).getrandbits(64) for _ in range(1000)]
    a = Sketch.from_keys(keys, 300)
    b = Sketch.from_keys(array("Q", reversed(keys)), 100)
    b.extend(300, keys)
    assert a.to_bytes() == b.to_bytes()
    assert a.to_bytes(0, 100) == Sketch.from_keys(keys, 100).to_bytes()


def test_sketch_encoder_updates_incrementally_as_items_arrive():
    r = random.Random(9)
    keys = [r.getrandbits(64) for _ in range(500)]
    enc = SketchEncoder(keys[:100], size=32)
    for k in keys[100:300]:
        enc.add(k)
    enc.add_many(keys[300:])
    assert enc.to_bytes(0, 200) == Sketch.from_keys(keys, 200).to_bytes()
    assert len(enc) == 500 and enc.size >= 200


def test_sketch_wire_roundtrip_and_streaming_append():
    r = random.Random(3)
    s = Sketch.from_keys([r.getrandbits(64) for _ in range(100)], 50, salt=77)
    t = Sketch(0, salt=77)
    assert t.append_bytes(s.to_bytes(0, 20)) == 20
    assert t.append_bytes(s.to_bytes(20, 30)) == 30
    assert [t.symbol(i) for i in range(50)] == [s.symbol(i) for i in range(50)]
    assert len(s.to_bytes(0, 1)) == symbol_wire_size(s.symbol(0)[2])


def test_sketch_rejects_malformed_wire_and_bad_input():
    s = Sketch(0)
    with pytest.raises(ValueError):
        s.append_bytes(b"\x00" * 12)  # no count
    with pytest.raises(ValueError):
        s.append_bytes(b"\x00" * 12 + b"\xff" * 11)  # varint too long
    assert len(s) == 0
    with pytest.raises(ValueError):
        s.add(-1)
    with pytest.raises(ValueError):
        s.add(2**64)
    with pytest.raises(TypeError):
        s.add("1")
    with pytest.raises(ValueError):
        Sketch(5, salt=1).subtract(Sketch(5, salt=2))
    with pytest.raises(ValueError):
        Sketch(5).subtract(Sketch(4))
    s.close()
    s.close()
    with pytest.raises(ValueError):
        len(s)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_sketch_parser_survives_arbitrary_bytes(data):
    s = Sketch(0)
    try:
        n = s.append_bytes(data)
    except ValueError:
        assert len(s) == 0
    else:
        assert len(s) == n
        assert s.to_bytes() == data or len(s.to_bytes()) <= len(data)
