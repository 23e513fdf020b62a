"""End to end, 3 NATS servers, an origin and two replicas on 127.0.0.1: replicas answer every read as the
origin does, send writes to it, and stream the same bytes."""

from __future__ import annotations

import time

import httpx

from engine.names import parse_resume_point


def put(node, key, path: str, body: bytes, **headers) -> httpx.Response:
    target = f"/{key.user}{path}"
    return node.http.put(target, content=body, headers={"Authorization": key.auth("PUT", target, body), **headers})


def test_writes_on_the_origin_are_read_alike_on_both_replicas(trio, key):
    a, b, c = trio
    seqs = []
    for i in range(30):
        r = put(a, key, f"/pub/app/k{i:02d}", b"v%d" % i)
        assert r.status_code == 201, r.text
        seqs.append(parse_resume_point(r.headers["event-id"]))
    assert seqs == list(range(seqs[0], seqs[0] + 30))
    target = f"/{key.user}/pub/app/k07"
    r = a.http.delete(target, headers={"Authorization": key.auth("DELETE", target)})
    assert r.status_code == 204
    last = parse_resume_point(r.headers["event-id"])
    for node in (b, c):
        node.wait_applied(last)
        for i in (0, 29):
            got = node.http.get(f"/{key.user}/pub/app/k{i:02d}")
            assert got.status_code == 200 and got.content == b"v%d" % i
            assert got.headers["etag"] == a.http.get(f"/{key.user}/pub/app/k{i:02d}").headers["etag"]
        assert node.http.get(target).status_code == 404
        assert node.http.head(f"/{key.user}/pub/app/k03").headers["content-length"] == "2"
        listing = node.http.get(f"/{key.user}/pub/app/")
        assert listing.text == a.http.get(f"/{key.user}/pub/app/").text and listing.text.count("\n") == 28
        health = node.health()
        assert health["role"] == "replica" and health["applied_seq"] == last == health["last_seq"]
    assert a.health()["role"] == "origin" and a.health()["applied_seq"] == last


def test_a_write_to_a_replica_is_redirected_to_the_origin(trio, key):
    a, b, _c = trio
    target = f"/{key.user}/pub/x"
    r = b.http.put(target, content=b"1", headers={"Authorization": key.auth("PUT", target, b"1")})
    assert r.status_code == 307
    assert r.headers["location"] == a.url + target
    assert r.json()["error"] == "redirect"
    # the same signed request, sent where the redirect says, is accepted there
    again = httpx.put(r.headers["location"], content=b"1",
                      headers={"Authorization": r.request.headers["authorization"]})
    assert again.status_code == 201
    assert b.http.get(f"/{key.user}/pub/").status_code == 200  # reads stay on the replica


def test_min_seq_waits_for_the_seq_then_answers_503_with_retry_after(trio, key):
    a, b, _c = trio
    r = put(a, key, "/pub/m", b"mine")
    event = r.headers["event-id"]
    got = b.http.get(f"/{key.user}/pub/m", headers={"Min-Seq": event})
    assert got.status_code == 200 and got.content == b"mine"  # read-your-write on a replica
    far = parse_resume_point(event) + 1000
    t0 = time.monotonic()
    late = b.http.get(f"/{key.user}/pub/m", headers={"Min-Seq": str(far)})
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert late.json()["error"] == "unavailable"
    assert 0.4 <= time.monotonic() - t0 < 3  # --min-seq-wait 0.5
    assert b.http.get(f"/{key.user}/pub/m", headers={"Min-Seq": "x!"}).status_code == 400


def test_history_streams_are_the_same_bytes_on_all_three_nodes(trio, key):
    a, b, c = trio
    for i in range(10):
        put(a, key, f"/pub/s/{i}", b"%d" % i)
    r = a.http.post(f"/{key.user}/pub/s/", content=b"item",
                    headers={"Authorization": key.auth("POST", f"/{key.user}/pub/s/", b"item")})
    last = parse_resume_point(r.headers["event-id"])
    bodies = []
    for node in (a, b, c):
        node.wait_applied(last)
        # a stream ends its connection: each on a fresh one
        resp = httpx.get(node.url + "/subscribe", params={"p": f"{key.user}/pub/s/*", "after": "0", "live": "false"})
        assert resp.status_code == 200
        bodies.append(resp.content)
        pubky = httpx.get(node.url + "/events/", params={"cursor": "0", "limit": "100"})
        assert pubky.status_code == 200
        bodies.append(b"pubky:" + pubky.content)
    assert bodies[0].count(b"\nid: ") + bodies[0].startswith(b"id: ") >= 11
    assert bodies[0] == bodies[2] == bodies[4]
    assert bodies[1] == bodies[3] == bodies[5]


def test_cluster_status_lists_every_node_with_its_role_and_applied_seq(trio, key, capsys):
    from engine.cli import main

    a, b, c = trio
    r = put(a, key, "/pub/status", b"s")
    seq = parse_resume_point(r.headers["event-id"])
    for node in (b, c):
        node.wait_applied(seq)
    import json

    args = ["cluster", "status", "--cluster", ",".join(a.nats_urls), "--cluster-name", a.cluster_name]
    deadline = time.monotonic() + 15
    while True:  # each node refreshes its registry entry every second
        assert main(args + ["--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        fresh = [n for n in status["nodes"] if n["applied_seq"] >= seq]
        if len(fresh) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status["origin"] == {"node": a.name, "url": a.url}
    assert status["stream"]["last_seq"] >= seq
    roles = {n["node"]: (n["role"], n["url"]) for n in status["nodes"]}
    assert roles == {a.name: ("origin", a.url), b.name: ("replica", b.url), c.name: ("replica", c.url)}
    assert all(n["applied_seq"] >= seq for n in status["nodes"])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"origin {a.name} ({a.url})" in text and text.count("replica") == 2
    assert main(["cluster", "status", "--cluster", ",".join(a.nats_urls), "--cluster-name", "nosuch"]) == 1
    assert "no cluster named 'nosuch'" in capsys.readouterr().err


def test_the_python_client_writes_through_a_replica_by_following_its_redirect(trio, key):
    from engine.client import Client

    a, b, _c = trio
    with Client(b.url, key.signing_key) as client:
        result = client.put("/pub/via-replica", b"followed")
        assert result.status == 201
        seq = parse_resume_point(result.event_id)
        b.wait_applied(seq)
        assert client.get("/pub/via-replica").data == b"followed"  # read back on the replica
    assert a.http.get(f"/{key.user}/pub/via-replica").content == b"followed"


def test_a_snapshot_is_only_for_the_clusters_nodes(trio):
    a, b, _c = trio
    for node in (a, b):
        assert node.http.get("/cluster/snapshot").status_code == 401
        bad = node.http.get("/cluster/snapshot", headers={"Authorization": "Bearer " + "0" * 64})
        assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
        assert node.http.get("/cluster/segment/00000000000000000001.seg", params={"bytes": "10"}).status_code == 401
