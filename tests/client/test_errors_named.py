"""Client errors name the real cause: a key that does not own the path, a server URL with a bad port, a state file
that cannot be written (before any event is handled, not after the first one)."""

from __future__ import annotations

import pytest

from e2e.harness import Key, ThreadServer
from engine.client import Client
from engine.client.errors import BadReference, LocalFileError, UnauthorizedError
from engine.client.http import check_url
from engine.client.stream import StateFile


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:99999", "invalid port '99999'"),
    ("http://127.0.0.1:abc", "invalid port 'abc'"),
    ("http://127.0.0.1:0", "invalid port 0"),
    ("http://:6286", "names no host"),
    ("127.0.0.1:6286", "must start with http:// or https://"),
    ("http://127.0.0.1:6286/?x=1", "no query"),
])
def test_a_bad_server_url_is_refused_before_any_request_saying_why(url, words):
    with pytest.raises(BadReference, match=words.replace("?", r"\?")):
        Client(url)


def test_good_server_urls_pass_unchanged():
    for url in ("http://127.0.0.1:6286", "https://example.org", "http://[::1]:65535", "http://h:1/base"):
        assert check_url(url) == url


def test_a_write_with_another_users_key_says_the_key_does_not_own_the_path(server):
    alice, bob = Key(b"\x01" * 32), Key(b"\x02" * 32)
    with Client(server.url, alice.signing_key) as hs:
        with pytest.raises(UnauthorizedError) as info:
            hs.put(f"{bob.user}/pub/a.txt", b"x")
        assert info.value.status == 401
        assert f"the key of user {alice.user} does not own pubky://{bob.user}/pub/a.txt" in str(info.value)
        assert f"needs the key of user {bob.user}" in info.value.server_message
        with pytest.raises(UnauthorizedError, match="does not own"):
            hs.delete(f"{bob.user}/pub/a.txt")
        with pytest.raises(UnauthorizedError, match=f"reading it needs the key of user {bob.user}"):
            hs.get(f"{bob.user}/priv/notes.txt")
    with Client(server.url) as anonymous:
        with pytest.raises(UnauthorizedError, match="needs its owner's key"):
            anonymous.post(f"{bob.user}/pub/feed/", b"x")


def test_a_refusal_of_a_signed_request_keeps_the_servers_message(server):
    alice = Key(b"\x01" * 32)
    with Client(server.url, alice.signing_key) as hs:
        hs.signer.clock = lambda: 1_000_000.0  # far outside the skew window: the server refuses the signature
        with pytest.raises(UnauthorizedError) as info:
            hs.put("/pub/a.txt", b"x")
        assert "does not own" not in str(info.value) and "timestamp" in info.value.server_message


def test_a_state_file_that_cannot_be_written_fails_before_the_stream_starts(tmp_path, server):
    plain = tmp_path / "plain"
    plain.write_text("x")
    for bad in (plain / "pos", tmp_path / "missing" / "pos"):
        with pytest.raises(LocalFileError, match=f"{bad}: cannot write the stream position"):
            StateFile(bad).check_writable()
        with Client(server.url) as hs:
            with pytest.raises(LocalFileError, match="--state"):
                hs.subscribe("*", after=0, state=bad)
    with pytest.raises(LocalFileError, match="is a folder"):
        StateFile(tmp_path).check_writable()
    good = StateFile(tmp_path / "pos")
    good.check_writable()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "plain"]  # the probe leaves nothing behind


def test_a_state_file_that_stops_being_writable_names_the_file(tmp_path):
    state = StateFile(tmp_path / "gone" / "pos")
    with pytest.raises(LocalFileError, match="cannot save the stream position"):
        state.save("0000000000001")
