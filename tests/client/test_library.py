"""Client pieces that need no server: key files, references, signing, error mapping."""

from __future__ import annotations

import os
import stat

import nacl.signing
import pytest

from engine.client import ApiError, BadReference, KeyFileError, NotFoundError, Signer, load_key, user_id, write_key
from engine.client import refs
from engine.client.http import _Requests
from engine.http.auth import Authenticator, parse_authorization
from engine.names import content_hash

KEY = nacl.signing.SigningKey(b"\x01" * 32)
USER = user_id(KEY)


# ---- key files ----

@pytest.mark.parametrize("fmt", ["hex", "raw"])
def test_key_file_round_trips_with_mode_0600(tmp_path, fmt):
    path = write_key(tmp_path / "k", KEY, fmt=fmt)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bytes(load_key(path)) == bytes(KEY)
    if fmt == "hex":
        assert path.read_text() == bytes(KEY).hex() + "\n"


def test_key_file_is_not_overwritten_without_force(tmp_path):
    path = write_key(tmp_path / "k", KEY)
    other = nacl.signing.SigningKey(b"\x02" * 32)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key(path, other)
    assert bytes(load_key(path)) == bytes(KEY)
    write_key(path, other, force=True)
    assert bytes(load_key(path)) == bytes(other)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_load_key_reads_homestream_key_as_a_path(tmp_path, monkeypatch):
    path = write_key(tmp_path / "k", KEY)
    monkeypatch.setenv("HOMESTREAM_KEY", str(path))
    assert user_id(load_key()) == USER
    monkeypatch.delenv("HOMESTREAM_KEY")
    with pytest.raises(KeyFileError, match="no key"):
        load_key()


@pytest.mark.parametrize("content", [b"", b"zz" * 32, b"ab" * 31, b"x" * 33])
def test_load_key_rejects_what_is_not_a_key(tmp_path, content):
    (tmp_path / "k").write_bytes(content)
    with pytest.raises(KeyFileError, match="not a key file"):
        load_key(tmp_path / "k")


def test_load_key_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(KeyFileError, match="homestream keygen"):
        load_key(tmp_path / "nope")


# ---- references ----

@pytest.mark.parametrize("ref", ["/pub/a.json", f"{USER}/pub/a.json", f"pubky://{USER}/pub/a.json"])
def test_references_name_the_same_key(ref):
    assert refs.resolve(ref, USER) == (USER, "/pub/a.json")


def test_directory_references_get_a_trailing_slash():
    assert refs.resolve("/pub/app", USER, directory=True) == (USER, "/pub/app/")


@pytest.mark.parametrize("ref,why", [
    ("/pub/a.json", "bare path"),  # without a key
    ("nobody/pub/a.json", "invalid user id"),
    (f"{USER.upper()}/pub/a", "invalid user id"),
    (f"{USER}/pub/../a", "'..' segment"),
    (f"{USER}/pub//a", "empty segment"),
    (f"{USER}/pub/dir/", "directory"),
    ("", "empty key"),
])
def test_bad_references_are_refused_before_any_request(ref, why):
    with pytest.raises(BadReference, match=why):
        refs.resolve(ref, None if why == "bare path" else USER)


def test_target_percent_encodes_and_the_signed_path_is_decoded():
    user, path = refs.resolve("/pub/a b/ü+%.json", USER)
    assert refs.target(user, path) == f"/{USER}/pub/a%20b/%C3%BC%2B%25.json"
    assert refs.signed_path(user, path) == f"/{USER}/pub/a b/ü+%.json"


@pytest.mark.parametrize("value,expected", [
    (0, (0, None)), ("0", (0, None)), ("1234", (1234, None)), ("000000000016J", (1234, None)),
    (f"000000000016J.{USER}", (1234, f"000000000016J.{USER}")),
])
def test_resume_points(value, expected):
    assert refs.check_resume_point(value) == expected


@pytest.mark.parametrize("value", ["-1", "abc", "000000000016j", -1, f"000000000016J.nobody"])
def test_bad_resume_points(value):
    with pytest.raises(BadReference):
        refs.check_resume_point(value)


# ---- signing ----

def test_signer_headers_verify_on_the_server_side():
    signer = Signer(KEY)
    header = signer.authorization("PUT", f"/{USER}/pub/a.json", b"{}")
    assert Authenticator().verify(header, "PUT", f"/{USER}/pub/a.json", b"{}", write=True) == USER


def test_signer_moves_the_timestamp_only_for_the_same_write_in_the_same_second():
    clock = [1_763_800_000.2]
    signer = Signer(KEY, clock=lambda: clock[0])
    path = f"/{USER}/pub/a.json"
    ts = lambda h: parse_authorization(h).timestamp  # noqa: E731
    a = signer.authorization("PUT", path, b"1")
    b = signer.authorization("PUT", path, b"1")
    c = signer.authorization("PUT", path, b"1")
    other = signer.authorization("PUT", path, b"2")
    assert (ts(a), ts(b), ts(c)) == (1_763_800_000, 1_763_800_001, 1_763_800_002)
    assert ts(other) == 1_763_800_000  # a different write keeps the clock: no drift under load
    assert len({a, b, c}) == 3
    auth = Authenticator(clock=lambda: clock[0])
    for h in (a, b, c, other):
        auth.verify(h, "PUT", path, b"1" if h != other else b"2", write=True)  # none is a replay
    # reads may reuse their signature: no movement
    assert ts(signer.authorization("GET", path)) == ts(signer.authorization("GET", path)) == 1_763_800_000
    clock[0] += 10  # later, the clock has passed the moved timestamps
    assert ts(signer.authorization("PUT", path, b"1")) == 1_763_800_010


def test_signer_forgets_old_writes():
    clock = [1_000_000.0]
    signer = Signer(KEY, clock=lambda: clock[0])
    for i in range(5000):
        signer.authorization("PUT", f"/{USER}/pub/{i}", b"")
    clock[0] += 400
    signer.authorization("PUT", f"/{USER}/pub/x", b"")
    for i in range(4100):
        signer.authorization("PUT", f"/{USER}/pub/y{i}", b"")
    assert len(signer._last) < 5000


def test_requests_sign_writes_and_private_reads_only():
    r = _Requests("http://127.0.0.1:1", KEY)
    assert "Authorization" in r.put("/pub/a.json", b"x", None, True).headers
    assert r.put("/pub/a.json", b"x", None, True).headers["Content-Type"] == "application/json"
    assert "Authorization" not in r.get("/pub/a.json", "GET", None).headers
    assert "Authorization" in r.get("/priv/a.json", "GET", None).headers
    other = user_id(nacl.signing.SigningKey(b"\x02" * 32))
    assert "Authorization" not in r.get(f"{other}/priv/a.json", "GET", None).headers  # our key opens nothing there
    assert r.list("/priv/", None, 10, True).params == [("limit", "10"), ("reverse", "true")]
    assert r.get("/pub/a", "GET", "abc=").headers["If-None-Match"] == '"abc="'


# ---- errors ----

def test_api_error_carries_status_code_and_message():
    err = ApiError.from_response(404, b'{"error":"not_found","message":"no such key"}')
    assert isinstance(err, NotFoundError)
    assert (err.status, err.code, err.server_message) == (404, "not_found", "no such key")
    plain = ApiError.from_response(502, b"<html>bad gateway</html>")
    assert (plain.status, plain.code) == (502, "bad_gateway") and "bad gateway" in plain.server_message


def test_content_hash_is_the_one_signed():
    assert content_hash(b"") == "rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI="
