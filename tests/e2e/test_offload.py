"""Signed requests whose signature is checked on the verifier threads (engine/http/offload.py): same answers, same
order, and the write's effects visible to the next request on the connection."""

from __future__ import annotations

import re

import httpx
import pytest

from .test_hostile import exchange


def put_bytes(key, target: str, body: bytes, auth: str | None = None) -> bytes:
    auth = auth if auth is not None else key.auth("PUT", target, body)
    return (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: {auth}\r\n\r\n").encode() + body


def statuses(raw: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_signed_writes_are_checked_on_the_verifier_threads(server, alice):
    assert server.app.offload is not None
    before = metric(server, "homestream_signatures_offloaded_total")
    target = f"/{alice.user}/pub/offload.txt"
    r = httpx.put(server.url + target, content=b"v", headers={"Authorization": alice.auth("PUT", target, b"v")})
    assert r.status_code == 201
    assert metric(server, "homestream_signatures_offloaded_total") == before + 1
    assert metric(server, "homestream_signatures_waiting") == 0


def test_one_signed_write_pipelined_twice_is_a_replay_the_second_time(server, alice):
    target = f"/{alice.user}/pub/twice.txt"
    once = put_bytes(alice, target, b"x")
    out = exchange(server.port, once + once + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(out) == [201, 401, 200]
    assert b'"error":"replayed"' in out


def test_pipelined_bad_signature_good_write_and_read_keep_their_order(server, alice, bob):
    target = f"/{alice.user}/pub/order.txt"
    forged = put_bytes(alice, target, b"forged", auth=bob.auth("PUT", target, b"forged"))  # bob signs for alice
    bad_sig = put_bytes(alice, target, b"tampered", auth=alice.auth("PUT", target, b"original"))
    good = put_bytes(alice, target, b"good")
    read = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    out = exchange(server.port, forged + bad_sig + good + read)
    assert statuses(out) == [401, 401, 201, 200]
    assert out.endswith(b"\r\n\r\ngood")  # the read after the write sees it


def test_names_are_checked_before_a_deferred_signature(server, alice):
    """SPEC order: a bad name is 400 even though the (valid) signature was checked beside the loop."""
    target = f"/{alice.user}/pub/../x"
    out = exchange(server.port, put_bytes(alice, target, b"v") + b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\n\r\n")
    assert statuses(out) == [400, 200]


@pytest.mark.parametrize("threads", [0, 2])
def test_signature_checks_answer_the_same_on_the_loop_or_on_threads(make_server, alice, threads):
    srv = make_server(verify_threads=threads)
    assert (srv.app.offload is None) == (threads == 0)
    target = f"/{alice.user}/pub/t.txt"
    good = httpx.put(srv.url + target, content=b"v", headers={"Authorization": alice.auth("PUT", target, b"v")})
    bad = httpx.put(srv.url + target, content=b"w", headers={"Authorization": alice.auth("PUT", target, b"v")})
    assert (good.status_code, bad.status_code) == (201, 401)
    assert bad.json() == {"error": "unauthorized", "message": "bad signature"}
    assert httpx.get(srv.url + target).content == b"v"


def test_signed_text_too_long_for_the_verifier_is_checked_inline(make_server, alice):
    """With a raised request-line limit a signed text can pass the pool's 64 KiB: the request is then checked
    on the loop, and answered by the usual rules (here: the path is too long, 400), never a crash."""
    srv = make_server(max_request_line=200_000, max_header_bytes=300_000)
    target = f"/{alice.user}/pub/" + "a" * 70_000
    out = exchange(srv.port, put_bytes(alice, target, b"v") + b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\n\r\n")
    assert statuses(out) == [400, 200]
    assert metric(srv, "homestream_signatures_inline_total") == 1


@pytest.mark.parametrize("threads", [0, 1])
def test_a_client_that_half_closes_after_its_requests_still_gets_every_answer(make_server, alice, threads):
    """A write's answer waits for its signature check and its commit; a peer that shut down its sending side
    (SHUT_WR) meanwhile still gets it, then the server closes."""
    srv = make_server(verify_threads=threads)
    target = f"/{alice.user}/pub/half.txt"
    reqs = (put_bytes(alice, target, b"v") + f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + put_bytes(alice, target, b"w"))
    out = exchange(srv.port, reqs, shut=True)
    assert statuses(out) == [201, 200, 204]
    assert httpx.get(srv.url + target).content == b"w"
