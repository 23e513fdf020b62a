"""The pure-Python symbols are bit-identical to the C core's (same walk, check and wire form)."""

import random

from engine.native.sketch import Sketch
from engine.sync.pysketch import PySketch, check, walk
from engine.native._lib import lib


def test_pysketch_symbols_equal_c_sketch_for_random_sets():
    rng = random.Random(11)
    for _ in range(40):
        salt = rng.getrandbits(64)
        keys = [rng.getrandbits(64) for _ in range(rng.randrange(0, 200))]
        size = rng.randrange(1, 300)
        py = PySketch(salt, size // 3)
        py.add_many(keys)
        py.extend(size)
        assert py.to_bytes() == Sketch.from_keys(keys, size, salt).to_bytes()


def test_pysketch_remove_and_extend_match_a_fresh_sketch():
    rng = random.Random(3)
    salt = rng.getrandbits(64)
    keys = [rng.getrandbits(64) for _ in range(100)]
    py = PySketch(salt, 50)
    py.add_many(keys)
    for k in keys[:30]:
        py.remove(k)
    py.extend(120)
    assert py.to_bytes() == Sketch.from_keys(keys[30:], 120, salt).to_bytes()
    assert py.to_bytes(100, 20) == Sketch.from_keys(keys[30:], 120, salt).to_bytes(100, 20)


def test_walk_and_check_match_c_definitions_on_edge_keys():
    for salt in (0, 1, (1 << 64) - 1):
        for key in (0, 1, (1 << 64) - 1, 0x9E3779B97F4A7C15):
            assert check(salt, key) == lib.ribltCheck(salt, key)
            idx = list(walk(salt, key, 5000))
            assert idx[0] == 0 and idx == sorted(set(idx))
            one = Sketch(5000, salt)
            one.add(key)
            assert [i for i in range(5000) if one.symbol(i)[2]] == idx
