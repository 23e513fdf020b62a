"""engine.native.verify: ed25519 checks on C worker threads, against pynacl (the same libsodium) as the oracle."""

from __future__ import annotations

import select

import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings, strategies as st

from engine.native.verify import KEY_BYTES, MESSAGE_MAX, SIGNATURE_BYTES, SignatureVerifier

KEY = nacl.signing.SigningKey(b"\x05" * 32)
PK = bytes(KEY.verify_key)


def sign(message: bytes) -> bytes:
    return KEY.sign(message).signature


def nacl_says(signature: bytes, message: bytes, public_key: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def collect(verifier: SignatureVerifier, count: int, timeout: float = 10.0) -> list[tuple[int, bool]]:
    got: list[tuple[int, bool]] = []
    while len(got) < count:
        ready, _, _ = select.select([verifier.fileno()], [], [], timeout)
        assert ready, f"no answer within {timeout} s ({len(got)} of {count})"
        got += verifier.harvest()
    return got


@pytest.fixture
def verifier():
    with SignatureVerifier(threads=2) as v:
        yield v


def test_verifier_answers_each_submitted_check_once(verifier):
    messages = [b"message %d" % i for i in range(500)]
    expect = {}
    for i, m in enumerate(messages):
        signature = sign(m)
        if i % 3 == 0:
            m = m + b"!"  # signed text changed: invalid
        expect[i] = i % 3 != 0
        assert verifier.submit(i, signature, m, PK)
    got = collect(verifier, len(messages))
    assert sorted(t for t, _ in got) == list(range(len(messages)))  # every ticket, each once
    assert dict(got) == expect
    assert verifier.harvest() == [] and verifier.in_flight() == 0


@settings(max_examples=150, deadline=None)
@given(message=st.binary(max_size=2048), flip=st.integers(min_value=-1, max_value=95),
       other_key=st.booleans())
def test_verifier_agrees_with_pynacl(message, flip, other_key):
    signature, public_key = sign(message), PK
    if 0 <= flip < 64:
        signature = signature[:flip] + bytes([signature[flip] ^ 0x01]) + signature[flip + 1:]
    elif flip >= 64:
        public_key = PK[: flip - 64] + bytes([PK[flip - 64] ^ 0x80]) + PK[flip - 63:]
    if other_key:
        public_key = bytes(nacl.signing.SigningKey(b"\x09" * 32).verify_key)
    expected = nacl_says(signature, message, public_key)
    with SignatureVerifier(threads=1) as v:
        assert v.verify_now(signature, message, public_key) is expected
        assert v.submit(7, signature, message, public_key)
        assert collect(v, 1) == [(7, expected)]


def test_verifier_full_pool_refuses_until_answers_are_harvested():
    with SignatureVerifier(threads=1, capacity=3) as v:
        for i in range(3):
            assert v.submit(i, sign(b"x"), b"x", PK)
        assert v.submit(3, sign(b"x"), b"x", PK) is False  # answered or not, unharvested jobs hold their place
        assert len(collect(v, 3)) == 3
        assert v.submit(4, sign(b"x"), b"x", PK)
        assert collect(v, 1) == [(4, True)]


def test_verifier_message_length_edge():
    with SignatureVerifier() as v:
        longest = b"a" * MESSAGE_MAX
        assert v.verify_now(sign(longest), longest, PK)
        with pytest.raises(ValueError):
            v.submit(1, sign(longest), longest + b"a", PK)
        with pytest.raises(ValueError):
            v.verify_now(sign(b""), longest + b"a", PK)
        assert v.verify_now(sign(b""), b"", PK)  # the empty message is a message


@pytest.mark.parametrize("signature, public_key", [
    (b"\0" * (SIGNATURE_BYTES - 1), PK), (b"\0" * (SIGNATURE_BYTES + 1), PK),
    (b"\0" * SIGNATURE_BYTES, PK[:-1]), (b"\0" * SIGNATURE_BYTES, PK + b"\0"),
    (bytearray(SIGNATURE_BYTES), PK), ("text", PK),
])
def test_verifier_rejects_wrong_sizes_and_types(verifier, signature, public_key):
    with pytest.raises(ValueError):
        verifier.submit(1, signature, b"m", public_key)
    with pytest.raises(ValueError):
        verifier.verify_now(signature, b"m", public_key)
    assert len(PK) == KEY_BYTES


@pytest.mark.parametrize("threads, capacity", [(0, 1), (65, 1), (1, 0)])
def test_verifier_rejects_bad_pool_settings(threads, capacity):
    with pytest.raises(ValueError):
        SignatureVerifier(threads=threads, capacity=capacity)


def test_verifier_close_drops_unanswered_jobs_and_is_idempotent():
    v = SignatureVerifier(threads=1)
    for i in range(200):
        assert v.submit(i, sign(b"m%d" % i), b"m%d" % i, PK)
    v.close()  # workers stop mid-queue; nothing is answered later, nothing leaks (see tests/c under ASan)
    v.close()
    with pytest.raises(ValueError):
        v.submit(1, sign(b"m"), b"m", PK)
    with pytest.raises(ValueError):
        v.harvest()
    with pytest.raises(ValueError):
        v.fileno()
