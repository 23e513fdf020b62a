"""record.py: framing vectors, round trips, and the CRC32C known answers (native vs the Python reference)."""

import os

import pytest
from hypothesis import given, strategies as st

from crc32c_ref import crc32c_ref
from engine.log import record
from engine.log.record import DEL, PUT, BadRecord, Record, check, decode, decode_records, encode
from engine.native.hashing import crc32c
from engine.names import encode_user

USER = encode_user(bytes(range(32)))
VECTOR = bytes.fromhex(
    "91000000257b4705b1010a000a00000007000000000000007b68e5cf8b010000050000007979796f7279617279776479716e796a"
    "6265666f61646571626865626e726f756e6f6b746366616164727062733879376461786f000102030405060708090a0b0c0d0e0f"
    "101112131415161718191a1b1c1d1e1f2f7075622f612e747874746578742f706c61696e68656c6c6f")


def test_crc32c_known_answer_reference_and_native():
    assert crc32c_ref(b"123456789") == 0xE3069283
    assert crc32c(b"123456789") == 0xE3069283


@given(st.binary(max_size=300), st.integers(0, 40))
def test_crc32c_native_matches_reference_on_memoryview_slices(data, cut):
    mv = memoryview(data)[min(cut, len(data)):]
    assert crc32c(mv) == crc32c_ref(mv)


def test_record_encode_fixed_bytes():
    got = encode(7, 1700000000123, PUT, USER, "/pub/a.txt", bytes(range(32)), "text/plain", b"hello")
    assert got == VECTOR
    assert len(got) == record.HEADER_SIZE + len("/pub/a.txt") + len("text/plain") + 5


def test_record_decode_fixed_bytes():
    rec = decode(VECTOR)
    assert (rec.seq, rec.ts, rec.kind, rec.user, rec.path, rec.digest, rec.content_type, bytes(rec.value)) == (
        7, 1700000000123, PUT, USER, "/pub/a.txt", bytes(range(32)), "text/plain", b"hello")
    assert rec.size == 5


def test_record_del_has_empty_digest_value_and_content_type():
    rec = decode(encode(9, 1, DEL, USER, "/pub/x"))
    assert rec.kind == DEL and rec.digest == b"" and rec.value == b"" and rec.content_type == ""


@given(seq=st.integers(1, 2**64 - 1), ts=st.integers(0, 2**64 - 1), path=st.text(min_size=1, max_size=40),
       value=st.binary(max_size=200), ctype=st.text(max_size=20))
def test_record_round_trip(seq, ts, path, value, ctype):
    path = "/" + path.replace("\0", "")
    data = encode(seq, ts, PUT, USER, path, os.urandom(32), ctype, value)
    rec = decode(data)
    assert (rec.seq, rec.ts, rec.path, bytes(rec.value), rec.content_type) == (seq, ts, path, value, ctype)


@pytest.mark.parametrize("pos", [0, 4, 8, 9, 16, 40, 100, 125, 144])
def test_record_any_flipped_byte_is_bad(pos):
    data = bytearray(VECTOR)
    data[pos] ^= 0x01
    with pytest.raises(BadRecord):
        check(data)


def test_record_truncated_is_bad():
    for n in (0, 10, 36, 120, len(VECTOR) - 1):
        with pytest.raises(BadRecord):
            check(VECTOR[:n])


def test_decode_records_iterates_a_slice_and_stops_at_zero_padding():
    recs = [encode(i, i, PUT, USER, f"/pub/{i}", os.urandom(32), "", b"v" * i) for i in range(1, 6)]
    buf = b"".join(recs) + bytes(300)
    out = list(decode_records(buf, verify=True))
    assert [r.seq for r in out] == [1, 2, 3, 4, 5]
    assert [bytes(r.value) for r in out] == [b"v" * i for i in range(1, 6)]


def test_record_equality_compares_contents():
    a = Record(1, 2, PUT, USER, "/p", b"d" * 32, "", b"x")
    b = Record(1, 2, PUT, USER, "/p", b"d" * 32, "", memoryview(b"x"))
    assert a == b
