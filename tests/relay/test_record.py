"""engine/relay/record.py, upstreams.py, routes.py, pubky.parse_page, follower.backoff_delay: the pure parts."""

import json
import random

import pytest
from hypothesis import given, strategies as st

from engine.errors import NotFound
from engine.http.router import MethodNotAllowed
from engine.http.sse import parse_frames
from engine.log.record import DEL, GAP, PUT, Record
from engine.names import encode_seq, encode_user, key_uri
from engine.relay.follower import backoff_delay
from engine.relay.pubky import parse_page
from engine.relay.record import (BODY, EXT, GAP_USER, NO_HASH, PAGE_END, PUBKY, Meta, meta_name, relay_frame,
                                 resume_point)
from engine.relay.routes import route
from engine.relay.upstreams import parse_upstream, parse_upstreams

USER = encode_user(bytes(range(32)))
DIGEST = bytes(range(32))


@given(st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=64), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 15))
def test_meta_round_trips_and_name_reads_alone(name, cursor, uid, a, index, flags):
    meta = Meta(name, cursor, uid, a, a // 2, index, flags)
    ext = meta.encode()
    assert len(ext) == EXT.size + len(name)
    back = Meta.decode(ext)
    assert (back.name, back.cursor, back.uid, back.a, back.b, back.index, back.flags) == (
        name, cursor, uid, a, a // 2, index, flags)
    assert meta_name(memoryview(ext)) == name


def test_upstream_id_is_the_homestream_event_id_or_the_pubky_cursor():
    assert Meta("a", 5, 5).upstream_id(USER) == f"{encode_seq(5)}.{USER}"
    assert Meta("p", 10, 13, flags=PUBKY).upstream_id(USER) == "13"
    assert Meta("p", 10, 0, index=2, flags=PUBKY).upstream_id(USER) == "10+2"


def test_resume_point_homestream_pubky_mid_page_and_page_end():
    assert resume_point(Meta("a", 41, 41)) == (41, 0)
    assert resume_point(Meta("p", 10, 0, index=3, flags=PUBKY)) == (10, 3)
    assert resume_point(Meta("p", 10, 19, index=4, flags=PUBKY | PAGE_END)) == (19, 0)
    assert resume_point(Meta("a", 77, 0, 50, 77)) == (77, 0)  # a gap: resume after its last missing seq


def frame_of(record, **kw):
    frames = parse_frames(relay_frame(record, **kw).decode())
    assert len(frames) == 1
    return frames[0]


def test_relay_frame_of_a_put_is_the_homeserver_frame_plus_upstream_fields():
    meta = Meta("alpha", 9, 9, 1700000000123, 5, flags=BODY)
    rec = Record(12, 1, PUT, USER, "/pub/a b.json", DIGEST, "", b"hello", ext=meta.encode())
    f = frame_of(rec)
    assert f["id"] == f"{encode_seq(12)}.{USER}" and f["event"] == "PUT"
    assert json.loads(f["data"]) == {"seq": 12, "user": USER, "path": "/pub/a b.json",
                                     "hash": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "size": 5,
                                     "ts": 1700000000123, "upstream": "alpha",
                                     "upstream_id": f"{encode_seq(9)}.{USER}"}
    assert json.loads(frame_of(rec, inline_max=5)["data"])["body"] == "hello"
    assert "body" not in json.loads(frame_of(rec, inline_max=4)["data"])  # the relay's --inline-max, at its edge


def test_relay_frame_size_is_the_upstreams_even_without_a_body():
    rec = Record(3, 1, PUT, USER, "/pub/big", DIGEST, "", b"", ext=Meta("a", 2, 2, 7, 900000).encode())
    doc = json.loads(frame_of(rec, inline_max=4096)["data"])
    assert doc["size"] == 900000 and "body" not in doc


def test_relay_frame_of_a_del_a_pubky_put_and_a_gap():
    d = frame_of(Record(4, 1, DEL, USER, "/pub/x", b"", "", b"", ext=Meta("a", 3, 3, 99).encode()))
    assert d["event"] == "DEL" and json.loads(d["data"]) == {
        "seq": 4, "user": USER, "path": "/pub/x", "ts": 99, "upstream": "a", "upstream_id": f"{encode_seq(3)}.{USER}"}
    p = frame_of(Record(5, 1, PUT, USER, "/pub/y", b"", "", b"",
                        ext=Meta("pk", 10, 12, 55, 0, 2, PUBKY | NO_HASH).encode()))
    doc = json.loads(p["data"])
    assert "hash" not in doc and "size" not in doc and doc["upstream_id"] == "12"
    g = frame_of(Record(6, 1, GAP, GAP_USER, "/", b"", "", b"", ext=Meta("a", 20, 0, 11, 20).encode()))
    assert g == {"id": encode_seq(6), "event": "gap", "data": '{"upstream":"a","from":11,"to":20}'}


def test_parse_page_reads_spec_3_5_pages():
    other = encode_user(bytes([7]) * 32)
    text = f"PUT {key_uri(USER, '/pub/a%b')}\nDEL {key_uri(other, '/pub/c')}\ncursor: 17"
    assert parse_page(text) == ([(PUT, USER, "/pub/a%b"), (DEL, other, "/pub/c")], 17)
    assert parse_page("") == ([], None)
    with pytest.raises(ValueError):
        parse_page(f"PUT {key_uri(USER, '/pub/a')}")  # no cursor line
    with pytest.raises(ValueError):
        parse_page("GET pubky://x\ncursor: 1")


def test_parse_upstreams_flags_tables_and_every_refusal():
    assert parse_upstream("a=http://h:1/") .url == "http://h:1"
    spec = parse_upstream({"name": "b", "url": "https://x.org", "kind": "pubky"})
    assert (spec.name, spec.kind) == ("b", "pubky")
    assert parse_upstream("n" * 64 + "=http://h").name == "n" * 64
    for bad in ("noequals", "=http://h", "n" * 65 + "=http://h", "a b=http://h", "a=ftp://h", "a=http://h?x=1",
                {"name": "a"}, {"name": "a", "url": "http://h", "kind": "nats"}, {"name": "a", "url": "http://h",
                                                                                  "extra": 1}, 7):
        with pytest.raises(ValueError):
            parse_upstream(bad)
    with pytest.raises(ValueError, match="twice"):
        parse_upstreams(["a=http://h", "a=http://g"])
    with pytest.raises(ValueError, match="at least one"):
        parse_upstreams([])


def test_backoff_delay_is_jittered_and_capped():
    rng = random.Random(1)
    values = [backoff_delay(a, 30.0, rng=rng) for a in range(12)]
    assert 0.125 <= values[0] <= 0.25
    assert max(values) <= 30.0 and values[-1] >= 15.0
    assert len({backoff_delay(3, 30.0, rng=rng) for _ in range(20)}) > 1


def test_routes_serve_streams_only():
    assert route("GET", "/subscribe").handler == "subscribe"
    assert route("GET", "/events/").handler == "pubky_events"
    assert route("GET", "/events-stream").handler == "pubky_events_stream"
    assert route("HEAD", "/healthz").handler == "healthz"
    assert route("OPTIONS", "/anything").handler == "preflight"
    for method, path in (("PUT", f"/{USER}/pub/a"), ("POST", "/set/x"), ("DELETE", f"/{USER}/pub/a"),
                         ("POST", "/subscribe"), ("PUT", "/healthz")):
        with pytest.raises(MethodNotAllowed):
            route(method, path)
    for path in (f"/{USER}/pub/a", "/get", "/", "/sync/x"):
        with pytest.raises(NotFound):
            route("GET", path)


def test_upstreams_from_a_toml_list_of_tables_and_from_the_environment(tmp_path):
    from engine.config import Settings

    toml = tmp_path / "relay.toml"
    toml.write_text('port = 7001\n[[upstream]]\nname = "a"\nurl = "http://h:1"\n'
                    '[[upstream]]\nname = "p"\nurl = "https://pk.example"\nkind = "pubky"\n')
    s = Settings.load(str(toml), env={})
    assert [(u.name, u.url, u.kind) for u in parse_upstreams(s.upstream)] == [
        ("a", "http://h:1", None), ("p", "https://pk.example", "pubky")]
    s = Settings.load(env={"HOMESTREAM_UPSTREAM": "a=http://h:1,b=http://g:2"})
    assert [u.name for u in parse_upstreams(s.upstream)] == ["a", "b"]
    assert "upstream" in Settings.relay_only() and "port" not in Settings.relay_only()
