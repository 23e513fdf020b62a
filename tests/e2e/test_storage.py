"""SPEC 2 against a real server over 127.0.0.1 with httpx: every row of the storage table, auth, CORS."""

import time

import httpx
import pytest

from engine.names import content_hash, event_id, item_name, parse_resume_point

from .harness import Key


def put(client, key: Key, path: str, body: bytes, **headers):
    target = f"/{key.user}{path}"
    return client.put(target, content=body, headers={"authorization": key.auth("PUT", target, body), **headers})


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_put_creates_then_overwrites_with_etag_and_event_id(client, alice):
    r = put(client, alice, "/pub/a/b.json", b'{"x":1}', **{"content-type": "application/json"})
    assert r.status_code == 201
    expected_tag = '"' + content_hash(b'{"x":1}') + '"'
    assert r.headers["etag"] == expected_tag
    first = parse_resume_point(r.headers["event-id"])
    assert r.headers["event-id"] == event_id(first, alice.user)
    r = put(client, alice, "/pub/a/b.json", b"v2")
    assert r.status_code == 204
    assert parse_resume_point(r.headers["event-id"]) == first + 1
    r = client.get(f"/{alice.user}/pub/a/b.json")
    assert r.status_code == 200 and r.content == b"v2"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["etag"] == f'"{content_hash(b"v2")}"'


def test_get_keeps_content_type_and_answers_304_and_head(client, alice):
    put(client, alice, "/pub/doc.json", b"[1]", **{"content-type": "application/json"})
    r = client.get(f"/{alice.user}/pub/doc.json")
    assert r.headers["content-type"] == "application/json"
    r2 = client.get(f"/{alice.user}/pub/doc.json", headers={"if-none-match": r.headers["etag"]})
    assert r2.status_code == 304 and r2.content == b""
    h = client.head(f"/{alice.user}/pub/doc.json")
    assert h.status_code == 200 and h.headers["content-length"] == "3" and h.content == b""
    assert client.get(f"/{alice.user}/pub/missing").status_code == 404


def test_delete_emits_event_and_missing_is_404(client, alice):
    put(client, alice, "/pub/x", b"1")
    target = f"/{alice.user}/pub/x"
    r = client.delete(target, headers={"authorization": alice.auth("DELETE", target)})
    assert r.status_code == 204 and "event-id" in r.headers
    assert client.get(target).status_code == 404
    r = client.delete(target, headers={"authorization": alice.auth("DELETE", target)})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_listing_is_lexicographic_with_cursor_limit_reverse(client, alice):
    for name in ["b", "a", "c/d", "c/e", "z"]:
        put(client, alice, f"/pub/l/{name}", b".")
    put(client, alice, "/pub/other", b".")
    base = f"/{alice.user}/pub/l/"
    uris = client.get(base).text.split("\n")
    assert uris == [f"pubky://{alice.user}/pub/l/{n}" for n in ["a", "b", "c/d", "c/e", "z"]]
    assert client.get(base, params={"limit": 2}).text.split("\n") == uris[:2]
    assert client.get(base, params={"cursor": uris[1]}).text.split("\n") == uris[2:]
    assert client.get(base, params={"cursor": "/pub/l/c/d", "limit": 1}).text == uris[3]
    assert client.get(base, params={"reverse": "true"}).text.split("\n") == uris[::-1]
    for bad in ["0", "x", "-1"]:
        r = client.get(base, params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert client.get(base, params={"limit": "5000"}).status_code == 200


def test_post_appends_content_addressed_item_once(client, alice):
    target = f"/{alice.user}/pub/chat/"
    body = b"hello"
    r = client.post(target, content=body, headers={"authorization": alice.auth("POST", target, body)})
    assert r.status_code == 201
    assert r.headers["location"] == f"{target}{item_name(body)}"
    assert "event-id" in r.headers
    r2 = client.post(target, content=body, headers={"authorization": alice.auth("POST", target, body)})
    assert r2.status_code == 200 and r2.headers["location"] == r.headers["location"]
    assert "event-id" not in r2.headers
    assert client.get(r.headers["location"]).content == body


def test_writes_need_the_owners_fresh_unreplayed_signature(client, alice, bob):
    target = f"/{alice.user}/pub/s"
    assert client.put(target, content=b"1").status_code == 401
    r = client.put(target, content=b"1", headers={"authorization": bob.auth("PUT", target, b"1")})
    assert r.status_code == 401
    old = alice.auth("PUT", target, b"1", ts=int(time.time()) - 301)
    assert client.put(target, content=b"1", headers={"authorization": old}).status_code == 401
    wrong_body = alice.auth("PUT", target, b"2")
    assert client.put(target, content=b"1", headers={"authorization": wrong_body}).status_code == 401
    good = alice.auth("PUT", target, b"1")
    assert client.put(target, content=b"1", headers={"authorization": good}).status_code == 201
    r = client.put(target, content=b"1", headers={"authorization": good})
    assert r.status_code == 401 and r.json()["error"] == "replayed"
    assert client.put(target, content=b"1", headers={"authorization": "HS1 garbage"}).status_code == 401


def test_private_paths_are_401_without_the_owners_signature(client, alice, bob):
    put(client, alice, "/priv/secret", b"s")
    target = f"/{alice.user}/priv/secret"
    assert client.get(target).status_code == 401
    assert client.get(f"/{alice.user}/priv/nothing").status_code == 401
    assert client.get(target, headers={"authorization": bob.auth("GET", target)}).status_code == 401
    r = client.get(target, headers={"authorization": alice.auth("GET", target)})
    assert r.status_code == 200 and r.content == b"s"
    listing = f"/{alice.user}/priv/"
    assert client.get(listing).status_code == 401
    assert client.get(listing, headers={"authorization": alice.auth("GET", listing)}).text.endswith("/priv/secret")


@pytest.mark.parametrize("target,status", [
    ("/NOTAUSER/pub/a", 400),
    ("/8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo/pub/%2e%2e/a", 400),
    ("/8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo/pub//a", 400),
    ("/8PINXXGQS41N4AIDIDENW5APQP1URFMZDZTR8JT4ABRKDN435EWO/pub/a", 400),
])
def test_bad_names_are_400_before_auth(client, target, status):
    r = client.put(target, content=b"x")
    assert r.status_code == status and r.json()["error"] in ("invalid_name", "bad_request")


def test_body_over_limit_is_413_before_auth(make_server, alice):
    srv = make_server(max_body_bytes=1000)
    with httpx.Client(base_url=srv.url) as c:
        r = c.put(f"/{alice.user}/pub/big", content=b"x" * 1001)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    with httpx.Client(base_url=srv.url) as c:
        assert put(c, alice, "/pub/edge", b"x" * 1000).status_code == 201


def test_cors_headers_and_preflight(client, alice):
    r = client.get(f"/{alice.user}/pub/none")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-expose-headers"] == "ETag, Event-Id, Location"
    r = client.options(f"/{alice.user}/pub/x")
    assert r.status_code == 204
    assert r.headers["access-control-allow-methods"] == "GET, HEAD, PUT, DELETE, POST, OPTIONS"
    assert r.headers["access-control-allow-headers"] == "Authorization, Content-Type, If-None-Match, Last-Event-ID"
    assert int(r.headers["access-control-max-age"]) > 0


def test_cors_origin_list_echoes_known_origins(make_server):
    srv = make_server(cors_origins=["https://app.example"])
    with httpx.Client(base_url=srv.url) as c:
        r = c.get("/healthz", headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example" and r.headers["vary"] == "Origin"
        r = c.get("/healthz", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_healthz_and_metrics_counters_move(client, alice):
    assert client.get("/healthz").json()["status"] == "ok"
    before = client.get("/metrics").text
    put(client, alice, "/pub/m", b"1")
    after = client.get("/metrics").text

    def value(text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(name)

    assert value(after, "homestream_log_last_seq") == value(before, "homestream_log_last_seq") + 1
    assert value(after, "homestream_connections_total") >= 1
    assert 'homestream_http_responses_total{status="201"}' in after


def test_post_location_is_percent_encoded_even_for_control_characters(client, alice):
    target = f"/{alice.user}/pub/odd%0d%0aX-Injected:%201/"
    decoded = f"/{alice.user}/pub/odd\r\nX-Injected: 1/"
    body = b"item"
    r = client.post(target, content=body, headers={"authorization": alice.auth("POST", decoded, body)})
    assert r.status_code == 201
    assert "x-injected" not in r.headers
    assert r.headers["location"] == f"/{alice.user}/pub/odd%0D%0AX-Injected%3A%201/{item_name(body)}"
    assert client.get(r.headers["location"]).content == body
