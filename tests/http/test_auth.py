"""engine.http.auth: an answer checked beside the loop (`remember`) decides only the request it was made for."""

from __future__ import annotations

import nacl.signing
import pytest

from engine.errors import Unauthorized
from engine.http.auth import Authenticator, Checked, parse_authorization, sign_request
from engine.names import encode_user

KEY = nacl.signing.SigningKey(b"\x03" * 32)
USER = encode_user(bytes(KEY.verify_key))
NOW = 1_800_000_000
PATH = f"/{USER}/pub/a.json"


def auth() -> Authenticator:
    return Authenticator(skew=300, clock=lambda: NOW)


def test_remembered_answer_is_used_for_the_same_request_only():
    a = auth()
    body = b"signed body"
    header = sign_request(KEY, "PUT", PATH, body, NOW)
    # an answer that says "invalid" for a genuinely valid signature: proves the remembered answer is what decides
    a.remember(Checked(header, "PUT", PATH, body, parse_authorization(header), False))
    with pytest.raises(Unauthorized, match="bad signature"):
        a.verify(header, "PUT", PATH, body, write=True)
    # an equal body in another object, another path or method: checked afresh, inline (and valid)
    assert a.verify(header, "PUT", PATH, bytes(bytearray(body)), write=True) == USER
    a.forget()
    assert a.verify(sign_request(KEY, "PUT", PATH, body, NOW + 1), "PUT", PATH, body, write=True) == USER


def test_remembered_valid_answer_still_goes_through_skew_and_replay():
    a = auth()
    body = b"x"
    header = sign_request(KEY, "PUT", PATH, body, NOW)
    a.remember(Checked(header, "PUT", PATH, body, parse_authorization(header), True))
    assert a.verify(header, "PUT", PATH, body, write=True) == USER
    with pytest.raises(Unauthorized, match="replayed"):
        a.verify(header, "PUT", PATH, body, write=True)
    late = Authenticator(skew=300, clock=lambda: NOW + 301)
    late.remember(Checked(header, "PUT", PATH, body, parse_authorization(header), True))
    with pytest.raises(Unauthorized, match="timestamp"):
        late.verify(header, "PUT", PATH, body, write=True)


def test_a_write_signature_is_remembered_only_when_its_request_is_accepted():
    a = auth()
    body = b"v"
    header = sign_request(KEY, "PUT", PATH, body, NOW)
    assert a.verify(header, "PUT", PATH, body, write=True) == USER
    a.settle(False)  # the request was refused after the check (a 400, 404, 507...): nothing remembered
    assert len(a.replay) == 0
    assert a.verify(header, "PUT", PATH, body, write=True) == USER
    a.settle(True)
    assert len(a.replay) == 1
    with pytest.raises(Unauthorized, match="replayed"):
        a.verify(header, "PUT", PATH, body, write=True)
    a.settle(False)  # a refused replay changes nothing
    assert len(a.replay) == 1
