"""The /sync wire format: round trips, and every truncation or altered byte refused."""

import random

import pytest

from engine.sync import wire
from engine.sync.pysketch import PySketch


def _requests():
    sk = PySketch(7, 20)
    sk.add_many([1, 2, 3, 1 << 63])
    h = bytes(range(32))
    return [
        wire.SyncRequest(wire.OP_SKETCH, 7, 4, h, symbols=sk.to_bytes(), nsym=20),
        wire.SyncRequest(wire.OP_SKETCH, 7, 0, bytes(32)),
        wire.SyncRequest(wire.OP_MORE, 7, 4, h, symbols=sk.to_bytes(5, 3), nsym=3, token=b"t" * 16, start=5),
        wire.SyncRequest(wire.OP_LIST, 1 << 63, 1 << 40, h),
        wire.SyncRequest(wire.OP_FETCH, 0, 3, h, digests=[bytes([i]) * 32 for i in range(3)]),
    ]


def _responses():
    h = bytes(range(32))
    return [
        wire.SyncResponse(wire.COMPLETE, 5, 10, h, items=[b"", b"x" * 300], extra=[1, (1 << 64) - 1]),
        wire.SyncResponse(wire.COMPLETE, 5, 0, bytes(32)),
        wire.SyncResponse(wire.MORE, 5, 10, h, token=b"k" * 16, have=24, need=100),
        wire.SyncResponse(wire.SALT, 5, 10, h),
        wire.SyncResponse(wire.RESTART, 5, 10, h),
        wire.SyncResponse(wire.LIST, 5, 2, h, digests=[b"a" * 32, b"b" * 32]),
        wire.SyncResponse(wire.ITEMS, 5, 2, h, items=[b"one"]),
    ]


@pytest.mark.parametrize("req", _requests())
def test_request_round_trip(req):
    assert wire.decode_request(wire.encode_request(req)) == req


@pytest.mark.parametrize("resp", _responses())
def test_response_round_trip(resp):
    assert wire.decode_response(wire.encode_response(resp)) == resp


@pytest.mark.parametrize("req", _requests())
def test_every_truncation_and_sampled_bit_flips_are_refused(req):
    data = wire.encode_request(req)
    for cut in range(len(data)):
        with pytest.raises(wire.WireError):
            wire.decode_request(data[:cut])
    rng = random.Random(len(data))
    for _ in range(200):
        i = rng.randrange(len(data))
        bad = bytearray(data)
        bad[i] ^= 1 << rng.randrange(8)
        with pytest.raises(wire.WireError):
            wire.decode_request(bytes(bad))
    with pytest.raises(wire.WireError):
        wire.decode_request(data + b"\x00")


def test_wrong_version_and_magic_are_named():
    data = bytearray(wire.encode_request(_requests()[0]))
    data[4] = 2
    body = bytes(data[:-8])
    with pytest.raises(wire.WireError, match="version 2"):
        wire.decode_request(body + wire.tag(body))
    with pytest.raises(wire.WireError, match="magic"):
        body = b"XXXX" + bytes(data[4:-8])
        wire.decode_request(body + wire.tag(body))


def test_symbols_for_grows_like_the_measured_quantile():
    assert wire.symbols_for(0) == wire.MIN_SYMBOLS
    assert 1450 <= wire.symbols_for(1000) <= 1500
    assert wire.symbols_for(10000) < 1.4 * 10000 + 200
