"""Issue 21 items 7 and 8 against a real server: names, headers and parameters answer before auth (SPEC 2's
order), a refused request leaves its signature usable, and nothing the server writes is invalid JSON or splits a
line on U+2028, U+2029 or U+0085."""

from __future__ import annotations

import json

import httpx
import pytest

from e2e.sse_client import SSEReader

SEPARATORS = ["\u2028", "\u2029", "\x85"]


def no_raw_separators(data: bytes) -> None:
    text = data.decode("utf-8")
    assert not any(s in text for s in SEPARATORS), text[:200]


def strict(data: bytes):
    no_raw_separators(data)
    return json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_a_long_content_type_is_400_before_auth(server, alice):
    target = f"/{alice.user}/pub/ct"
    long_ct = "text/" + "x" * 1100
    r = httpx.put(server.url + target, content=b"v", headers={"content-type": long_ct})  # unsigned
    assert r.status_code == 400 and r.json()["error"] == "invalid_name"
    r = httpx.post(server.url + f"/{alice.user}/pub/coll/", content=b"v", headers={"content-type": long_ct})
    assert r.status_code == 400
    ok = "text/" + "x" * 1019  # 1024 bytes exactly
    r = httpx.put(server.url + target, content=b"v",
                  headers={"content-type": ok, "authorization": alice.auth("PUT", target, b"v")})
    assert r.status_code == 201 and httpx.get(server.url + target).headers["content-type"] == ok


def test_a_refused_write_leaves_its_signature_usable(server, alice):
    target = f"/{alice.user}/pub/replay"
    auth = alice.auth("PUT", target, b"v")
    r = httpx.put(server.url + target, content=b"v", headers={"authorization": auth, "content-type": "x" * 1100})
    assert r.status_code == 400
    r = httpx.put(server.url + target, content=b"v", headers={"authorization": auth})
    assert r.status_code == 201  # the same signature, now accepted
    r = httpx.put(server.url + target, content=b"v", headers={"authorization": auth})
    assert r.status_code == 401 and r.json()["error"] == "replayed"  # and now used up
    # refused by the resource (404) after auth: still usable
    gone = f"/{alice.user}/pub/not-yet"
    dauth = alice.auth("DELETE", gone)
    assert httpx.delete(server.url + gone, headers={"authorization": dauth}).status_code == 404
    assert httpx.put(server.url + gone, content=b"1",
                     headers={"authorization": alice.auth("PUT", gone, b"1")}).status_code == 201
    assert httpx.delete(server.url + gone, headers={"authorization": dauth}).status_code == 204
    assert httpx.delete(server.url + gone, headers={"authorization": dauth}).status_code == 401


def test_a_collection_dir_too_long_for_an_item_name_is_400_before_auth(server, alice):
    dir_path = "/pub/" + "d" * (1024 - 5 - 52) + "/"  # one byte too long for <dir><52-char name>
    assert httpx.post(server.url + f"/{alice.user}{dir_path}", content=b"v").status_code == 400
    assert httpx.post(server.url + f"/set/{alice.user}{dir_path}", content=b'{"value":1}').status_code == 400
    fits = "/pub/" + "d" * (1024 - 6 - 52) + "/"
    target = f"/{alice.user}{fits}"
    r = httpx.post(server.url + target, content=b"v", headers={"authorization": alice.auth("POST", target, b"v")})
    assert r.status_code == 201


@pytest.mark.parametrize("query", ["limit=" + "9" * 5000, "cursor=" + "9" * 5000, "cursor=" + "0" * 30 + "1"])
def test_huge_numbers_are_400_or_clamped_never_500(server, query):
    r = httpx.get(server.url + "/events/?" + query)
    assert r.status_code in (200, 400), r.text
    r = httpx.get(server.url + "/subscribe?p=*&live=false&after=" + "9" * 5000)
    assert r.status_code == 400


def test_stored_values_that_are_not_strict_json_go_as_base64(server, alice):
    d = f"/{alice.user}/pub/vals/"
    bodies = [b'{"a": NaN}', b'{"a":\n 1e400}', b'{"s": "x\xe2\x80\xa8y"}', b"[Infinity]", b'{"a":1,"a":2}']
    for b in bodies:
        assert httpx.post(server.url + d, content=b, headers={"authorization": alice.auth("POST", d, b)}) \
            .status_code == 201
    r = httpx.get(server.url + "/get", params={"id": f"{alice.user}/pub/vals/"})
    items = strict(r.content)["items"]
    assert [("value" in i) for i in items] == [False, True, True, False, False]
    assert items[1]["value"] == {"a": float("inf")} or items[1]["value"]["a"] > 1e300
    assert items[2]["value"] == {"s": "x\u2028y"}
    # /set refuses what has no strict JSON form
    path = f"/set/{alice.user}/pub/vals2/"
    for b in (b'{"value": NaN}', b'{"value": 1e400}', b'{"value": [-Infinity]}'):
        assert httpx.post(server.url + path, content=b, headers={"authorization": alice.auth("POST", path, b)}) \
            .status_code == 400


def test_line_separators_in_paths_are_escaped_in_every_answer(server, alice):
    names = ["a\u2028b", "c\u2029d", "e\x85f"]
    for n in names:
        target = f"/{alice.user}/pub/sep/{n}"
        enc = httpx.URL(server.url + "/").copy_with(raw_path=(f"/{alice.user}/pub/sep/" + httpx.QueryParams(
            {"x": n}).__str__()[2:]).encode())
        r = httpx.put(enc, content=b"v", headers={"authorization": alice.auth("PUT", target, b"v")})
        assert r.status_code == 201, r.text
    listing = httpx.get(server.url + f"/{alice.user}/pub/sep/")
    no_raw_separators(listing.content)
    assert "%E2%80%A8" in listing.text and "%C2%85" in listing.text
    page = httpx.get(server.url + "/events/")
    no_raw_separators(page.content)
    assert len(page.text.split("\n")) == 4  # three events and the cursor: no line was split
    for target in ("/subscribe?p=*&after=0&live=false", "/subscribe?p=*&after=0&live=false&inline=1",
                   f"/subscribe?p={alice.user}/pub/sep/*&after=0&live=false",
                   f"/events-stream?user={alice.user}"):
        reader = SSEReader(server.port, target)
        try:
            reader.read_frames(until_end=True, timeout=10)
            no_raw_separators(bytes(reader.body))
            assert b"\\u2028" in reader.body or b"%E2%80%A8" in reader.body
        finally:
            reader.close()
    for raw, status in ((f"/{alice.user}/pub/sep/a%E2%80%A8b//x", 400), (f"/{alice.user}/pub/sep/z%C2%85", 404)):
        r = httpx.get(httpx.URL(server.url).copy_with(raw_path=raw.encode()))
        assert r.status_code == status
        strict(r.content)
