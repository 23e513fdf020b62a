"""CRC32C and MurmurHash3 of engine.native.hashing against pure-Python references and the mmh3 oracle."""

import mmap
import os

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.native.hashing import crc32c, crc32c_hardware, murmur3_x64_128, murmur3_x64_128_int, murmur3_x86_32
from engine.native._lib import lib


def crc32c_reference(data: bytes, value: int = 0) -> int:
    crc = value ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_answer():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43


def test_crc32c_continues_from_value():
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283


def test_crc32c_reads_bytearray_memoryview_and_mmap_slices():
    data = os.urandom(1000)
    with mmap.mmap(-1, 4096) as m:
        m[100:1100] = data
        view = memoryview(m)[100:1100]
        assert crc32c(view) == crc32c(data)
        view.release()
    assert crc32c(bytearray(data)) == crc32c(data)
    assert crc32c(memoryview(data)[3:77]) == crc32c(data[3:77])


def test_crc32c_rejects_bad_arguments():
    with pytest.raises(TypeError):
        crc32c("text")
    with pytest.raises(ValueError):
        crc32c(b"x", -1)
    with pytest.raises(ValueError):
        crc32c(b"x", 1 << 32)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF), st.integers(0, 15))
def test_crc32c_matches_reference_on_every_alignment(data, value, skip):
    view = memoryview(b"\0" * skip + data)[skip:]
    expected = crc32c_reference(data, value)
    assert crc32c(view, value) == expected
    assert lib.crc32cUpdateSoft(value, bytes(data), len(data)) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 0xFFFFFFFF), st.sampled_from([bytes, bytearray, memoryview]))
def test_crc32c_cpython_entry_point_agrees_with_the_cffi_path(data, value, kind):
    from engine.native.hashing import crc32c_cffi

    assert crc32c(kind(data), value) == crc32c_cffi(kind(data), value) == crc32c_cffi(data, value)


def test_crc32c_reports_its_path():
    assert crc32c_hardware() in (True, False)


def mmh3_128(key: bytes, seed: int) -> int:
    """The oracle: mmh3's 16 bytes (h1 LE, h2 LE).  mmh3 5.3.1's hash128(..., signed=False) returns some
    values with seed >= 2^31 as negative ints (the same bits modulo 2^128), so compare through hash_bytes."""
    value = int.from_bytes(mmh3.hash_bytes(key, seed, True), "little")
    assert value == mmh3.hash128(key, seed, True, False) % (1 << 128)
    return value


MURMUR_VECTORS = [b"", b"a", b"abc", b"hello world", bytes(range(15)), bytes(range(16)), bytes(range(17)),
                  bytes(range(31)), bytes(range(32)), bytes(range(33)), b"\xff" * 100]


@pytest.mark.parametrize("key", MURMUR_VECTORS)
@pytest.mark.parametrize("seed", [0, 1, 42, 0xFFFFFFFF])
def test_murmur3_fixed_vectors_match_mmh3(key, seed):
    h1, h2 = murmur3_x64_128(key, seed)
    assert h2 << 64 | h1 == mmh3_128(key, seed)
    assert murmur3_x64_128_int(key, seed) == mmh3_128(key, seed)
    assert murmur3_x86_32(key, seed) == mmh3.hash(key, seed)


def test_murmur3_known_answers():
    # published MurmurHash3_x86_32 values
    assert murmur3_x86_32(b"", 0) == 0
    assert murmur3_x86_32(b"", 1) & 0xFFFFFFFF == 0x514E28B7
    assert murmur3_x86_32(b"hello", 0) & 0xFFFFFFFF == 0x248BFA47
    assert murmur3_x64_128(b"", 0) == (0, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_murmur3_matches_mmh3_on_random_bytes_and_seeds(key, seed):
    h1, h2 = murmur3_x64_128(key, seed)
    assert h2 << 64 | h1 == mmh3_128(key, seed)
    assert murmur3_x86_32(bytearray(key), seed) == mmh3.hash(key, seed)


def test_murmur3_rejects_bad_seed_and_type():
    with pytest.raises(ValueError):
        murmur3_x64_128(b"x", -1)
    with pytest.raises(ValueError):
        murmur3_x86_32(b"x", 1 << 32)
    with pytest.raises(TypeError):
        murmur3_x64_128("text")
    with pytest.raises(TypeError):
        murmur3_x64_128(b"x", "1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_murmur3_int_form_matches_mmh3_on_random_bytes_and_seeds(key, seed):
    assert murmur3_x64_128_int(key, seed) == mmh3_128(key, seed)
    assert murmur3_x64_128_int(memoryview(key), seed) == mmh3_128(key, seed)
    if seed == 0:  # the one-argument form (mmh3 may return the same 128 bits as a negative int: see mmh3_128)
        assert murmur3_x64_128_int(key) == mmh3.hash128(key, 0, True, False) % (1 << 128)


def test_murmur3_int_form_with_short_high_words():
    # the int is built from 30-bit digits: cover a value with a zero top digit (4 digits) beside the common 5
    # (3 digits needs 38 leading zero bits: out of reach of a search; the digit arithmetic is the same)
    found = {}
    for i in range(100_000):
        key = i.to_bytes(4, "little")
        v = mmh3_128(key, 0)
        digits = max(1, (v.bit_length() + 29) // 30)
        if digits not in found:
            found[digits] = key
        if {4, 5} <= set(found):
            break
    assert {4, 5} <= set(found)
    for key in found.values():
        assert murmur3_x64_128_int(key) == mmh3_128(key, 0)
