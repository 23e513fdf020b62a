"""engine.names against the SPEC 1 known answers and at every limit's edge."""

import base64

import pytest
from hypothesis import given, strategies as st

from engine import names
from engine.errors import InvalidName

USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


def test_user_ids_match_vectors(vectors):
    for case in vectors["user_ids"]:
        pk = bytes.fromhex(case["public_key_hex"])
        assert names.encode_user(pk) == case["user"]
        assert names.decode_user(case["user"]) == pk


def test_event_ids_match_vectors(vectors):
    for case in vectors["event_ids"]:
        assert names.encode_seq(case["seq"]) == case["seq13"]
        assert names.event_id(case["seq"], USER) == case["event_id"]
        assert names.parse_resume_point(case["event_id"]) == case["seq"]


def test_resume_points_match_vectors(vectors):
    for case in vectors["resume_points"]:
        if "error" in case:
            with pytest.raises(InvalidName):
                names.parse_resume_point(case["text"])
        else:
            assert names.parse_resume_point(case["text"]) == case["seq"]


def test_content_hashes_and_item_names_match_vectors(vectors):
    for case in vectors["content_hashes"]:
        assert names.content_hash(base64.b64decode(case["body_b64"])) == case["content_hash"]
    for case in vectors["item_names"]:
        body = base64.b64decode(case["body_b64"])
        assert names.item_name(body) == case["item_name"]
        assert names.is_item_name(case["item_name"])


@pytest.mark.parametrize("bad", [
    USER.upper(), USER[:-1], USER + "y", "", USER[:-1] + "l",  # 'l' is not in the alphabet
    USER[:-1] + "n",  # last char must leave the 4 padding bits zero
])
def test_decode_user_rejects_invalid_ids(bad):
    with pytest.raises(InvalidName):
        names.decode_user(bad)


@given(st.binary(min_size=32, max_size=32))
def test_user_round_trips(pk):
    assert names.decode_user(names.encode_user(pk)) == pk


@given(st.integers(min_value=0, max_value=names.MAX_SEQ))
def test_seq_text_round_trips_and_sorts(seq):
    text = names.encode_seq(seq)
    assert len(text) == 13 and names.parse_resume_point(text) == seq
    if seq > 0:
        assert names.encode_seq(seq - 1) < text


def test_resume_point_suffix_must_be_a_user():
    with pytest.raises(InvalidName):
        names.parse_resume_point("000000000016J.notauser")


def test_path_limit_is_1024_bytes_exactly():
    ok = "/" + "a" * 1023
    assert names.check_path(ok) == ok
    with pytest.raises(InvalidName):
        names.check_path("/" + "a" * 1024)
    # multibyte characters count in bytes
    with pytest.raises(InvalidName):
        names.check_path("/" + "é" * 512)


@pytest.mark.parametrize("bad", ["", "pub/a", "/pub//a", "/pub/./a", "/pub/../a", "/pub/a\x00", "//", "/..", "/pub/a/.."])
def test_check_path_rejects(bad):
    with pytest.raises(InvalidName):
        names.check_path(bad)


@pytest.mark.parametrize("good", ["/", "/pub/", "/pub/a", "/pub/a/", "/pub/ü nicode/x", "/priv/.hidden", "/pub/a..b"])
def test_check_path_accepts(good):
    assert names.check_path(good) == good


def test_percent_decoding_exposes_dot_dot_segments():
    decoded = names.percent_decode(f"/{USER}/pub/%2e%2e/x")
    with pytest.raises(InvalidName):
        names.split_key(decoded)
    with pytest.raises(InvalidName):
        names.percent_decode("/pub/%ff")


def test_split_key():
    assert names.split_key(f"/{USER}/pub/a.json") == (USER, "/pub/a.json")
    with pytest.raises(InvalidName):
        names.split_key(f"/{USER}")


@pytest.mark.parametrize("text,user,path,prefix", [
    (f"{USER}/pub/a/b.json", USER, "/pub/a/b.json", False),
    (f"{USER}/pub/a/*", USER, "/pub/a/", True),
    (f"{USER}/*", USER, "/", True),
    ("*/pub/a/*", None, "/pub/a/", True),
    ("*/pub/a/b.json", None, "/pub/a/b.json", False),
    ("*", None, "/", True),
])
def test_parse_pattern_forms(text, user, path, prefix):
    p = names.parse_pattern(text)
    assert (p.user, p.path, p.prefix) == (user, path, prefix)


@pytest.mark.parametrize("bad", ["", "**", f"{USER}/pub/a*", f"{USER}/pub/*/b", "*/pub/*/x", "x*/pub/a", USER,
                                 f"{USER.upper()}/pub/a", "*/pub/../a", f"{USER}/pub//a", "*a/pub"])
def test_parse_pattern_rejects_and_names_the_pattern(bad):
    with pytest.raises(InvalidName) as info:
        names.parse_pattern(bad)
    assert repr(bad) in info.value.message


def test_decode_user_memory_is_bounded_and_never_keeps_invalid_ids(monkeypatch):
    monkeypatch.setattr(names, "_VALID_USERS_MAX", 2)
    names._VALID_USERS.clear()
    with pytest.raises(InvalidName):
        names.decode_user(USER.upper())
    assert USER.upper() not in names._VALID_USERS
    for seed in range(3):
        names.decode_user(names.encode_user(bytes([seed]) * 32))
        assert len(names._VALID_USERS) <= 2
    assert names.decode_user(USER) == names.zbase32_decode(USER, 32)


def test_key_uri_escapes_what_would_break_a_line():
    assert names.key_uri(USER, "/pub/a b/ü.json") == f"pubky://{USER}/pub/a b/ü.json"
    uri = names.key_uri(USER, "/pub/x\r\ny%z")
    assert uri == f"pubky://{USER}/pub/x%0D%0Ay%25z"
    assert names.percent_decode(uri[len("pubky://") + len(USER):]) == "/pub/x\r\ny%z"


def test_content_digest_remembers_only_the_same_bytes_object():
    import blake3

    from engine.names import content_digest

    a = b"x" * 100
    assert content_digest(a) == blake3.blake3(a).digest()
    assert content_digest(a) == blake3.blake3(a).digest()  # remembered
    b = bytearray(a)
    assert content_digest(b) == blake3.blake3(a).digest()
    b[0] = ord("y")  # a mutable buffer is never remembered
    assert content_digest(b) == blake3.blake3(bytes(b)).digest()
    c = b"y" + a[1:]
    assert content_digest(c) == blake3.blake3(c).digest() != content_digest(a)


def test_remember_digest_primes_content_digest_for_that_object_only():
    from engine.names import content_digest, remember_digest

    a, other = b"first body", b"second body"
    remember_digest(a, b"\x01" * 32)  # a deliberately wrong digest proves the remembered one is returned
    assert content_digest(a) == b"\x01" * 32
    content_digest(other)
    import blake3

    assert content_digest(a) == blake3.blake3(a).digest()  # forgotten once another object was hashed
    remember_digest(bytearray(a), b"\x02" * 32)  # a mutable buffer is never remembered
    assert content_digest(bytearray(a)) == blake3.blake3(a).digest()
