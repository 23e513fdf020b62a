"""SPEC 5.2 against a real server: signups, quotas, rate limits, the admin API, each at its edge. Every refused
write is checked to have appended nothing (log last_seq unchanged) and emitted no event (a subscriber's next
event is the next accepted write)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from engine.policy.gate import startup_warnings
from engine.config import Settings

from .harness import Key, ThreadServer
from .sse_client import SSEReader, events

SECRET = "a-test-admin-secret-0123456789"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "admin.secret"
    path.write_text(SECRET + "\n")
    return str(path)


@pytest.fixture
def start(tmp_path, secret_file):
    started = []

    def make(data="data", **overrides):
        srv = ThreadServer(tmp_path / data, admin_secret_file=secret_file, **overrides).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def put(url, key: Key, path: str, body: bytes = b"v", **headers):
    target = f"/{key.user}{path}"
    return httpx.put(url + target, content=body,
                     headers={"authorization": key.auth("PUT", target, body), **headers}, timeout=10)


def delete(url, key: Key, path: str):
    target = f"/{key.user}{path}"
    return httpx.delete(url + target, headers={"authorization": key.auth("DELETE", target)}, timeout=10)


def signup(url, key: Key, token: str | None):
    target = "/signup" + (f"?token={token}" if token is not None else "")
    return httpx.post(url + target, headers={"authorization": key.auth("POST", "/signup")}, timeout=10)


def admin(url, method: str, path: str, secret: str = SECRET):
    return httpx.request(method, f"{url}/admin/{path}", headers={"authorization": f"Bearer {secret}"}, timeout=30)


class FrozenClock:
    """Stands in for a limiter's clock so a shared, slow machine cannot refill a bucket mid-test."""

    def __init__(self) -> None:
        self.t = time.monotonic_ns()

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1e9)


def freeze(srv, *limiters: str) -> FrozenClock:
    clock = FrozenClock()

    def install() -> None:
        for name in limiters:
            getattr(srv.app.policy, name).clock = clock

    srv.call(install)
    return clock


def last_seq(srv) -> int:
    return srv.call(lambda: srv.app.log.last_seq)


class Watch:
    """A subscriber to every event: `next_is(seq)` checks nothing was emitted between refusals and `seq`."""

    def __init__(self, srv, pattern="*"):
        self.reader = SSEReader(srv.port, f"/subscribe?p={pattern}")
        assert self.reader.head() == 200

        self.seen = 0

    def skip(self, n: int) -> None:
        assert len(events(self.reader.read_frames(self.seen + n))) >= self.seen + n
        self.seen += n

    def next_is(self, seq: int) -> None:
        got = events(self.reader.read_frames(self.seen + 1))
        assert got[self.seen]["seq"] == seq, f"an event was emitted before seq {seq}: {got[self.seen:]}"
        self.seen += 1

    def close(self) -> None:
        self.reader.close()


def refused(srv, response, status: int, code: str, before: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert last_seq(srv) == before, "a refused write reached the log"


# ---- signups ----

def test_token_signup_single_use_and_refused_writes_leave_nothing(start, alice, bob):
    srv = start(signup="token")
    w = Watch(srv)
    before = last_seq(srv)
    refused(srv, put(srv.url, alice, "/pub/a"), 403, "forbidden", before)
    token = admin(srv.url, "POST", "signup-tokens").json()["token"]
    assert signup(srv.url, alice, "not-a-token").status_code == 403
    r = signup(srv.url, alice, token)
    assert r.status_code == 201 and r.json() == {"user": alice.user}
    r = signup(srv.url, bob, token)  # the same token twice
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    refused(srv, put(srv.url, bob, "/pub/b"), 403, "forbidden", before)
    revoked = admin(srv.url, "POST", "signup-tokens").json()["token"]
    assert admin(srv.url, "DELETE", f"signup-tokens/{revoked}").status_code == 204
    assert signup(srv.url, bob, revoked).status_code == 403
    assert signup(srv.url, bob, None).status_code == 400  # names and parameters first
    r = httpx.post(srv.url + f"/signup?token={token}", timeout=10)
    assert r.status_code == 401  # auth before the token
    r = put(srv.url, alice, "/pub/a")
    assert r.status_code == 201
    w.next_is(before + 1)
    w.close()


def test_signups_and_disabled_users_survive_a_restart_and_closed_keeps_existing_users(tmp_path, start, alice,
                                                                                      bob):
    carol = Key(b"\x03" * 32)
    srv = start(signup="token")
    token = admin(srv.url, "POST", "signup-tokens").json()["token"]
    spare = admin(srv.url, "POST", "signup-tokens").json()["token"]
    assert signup(srv.url, alice, token).status_code == 201
    assert admin(srv.url, "POST", f"users/{carol.user}/disable").status_code == 204
    srv.stop()
    # open: bob writes data without signing up; then the server is switched to closed
    srv = start(signup="open")
    assert put(srv.url, bob, "/pub/b").status_code == 201
    srv.stop()
    srv = start(signup="closed")
    assert put(srv.url, alice, "/pub/a").status_code == 201  # signed up
    assert put(srv.url, bob, "/pub/b", b"2").status_code == 204  # holding data from the open days
    before = last_seq(srv)
    refused(srv, put(srv.url, carol, "/pub/c"), 403, "forbidden", before)  # still disabled
    assert signup(srv.url, carol, spare).status_code == 403  # closed: no signups at all
    srv.stop()
    srv = start(signup="token")
    assert signup(srv.url, carol, spare).status_code == 201  # the spare token outlived two restarts
    refused(srv, put(srv.url, carol, "/pub/c"), 403, "forbidden", last_seq(srv))  # signed up, but disabled


def test_open_signup_on_a_public_address_warns_loudly():
    assert startup_warnings(Settings.load(env={}, overrides={"host": "0.0.0.0"}))
    assert not startup_warnings(Settings.load(env={}, overrides={"host": "0.0.0.0", "signup": "token"}))
    assert not startup_warnings(Settings.load(env={}, overrides={"host": "127.0.0.1"}))


# ---- quotas ----

def test_quota_exactly_at_the_limit_passes_one_byte_past_is_507(start, alice):
    srv = start(user_quota_bytes=100)
    w = Watch(srv)
    assert put(srv.url, alice, "/pub/a", b"x" * 60).status_code == 201
    r = put(srv.url, alice, "/pub/b", b"x" * 40)  # exactly at the limit
    assert r.status_code == 201
    seq_b = last_seq(srv)
    before = seq_b
    refused(srv, put(srv.url, alice, "/pub/c", b"x"), 507, "quota_exceeded", before)  # one byte past
    refused(srv, put(srv.url, alice, "/pub/b", b"x" * 41), 507, "quota_exceeded", before)  # growth by one
    target = f"/{alice.user}/pub/"
    body = b"x"
    r = httpx.post(srv.url + target, content=body, headers={"authorization": alice.auth("POST", target, body)})
    refused(srv, r, 507, "quota_exceeded", before)  # an append-only item too
    assert put(srv.url, alice, "/pub/b", b"y" * 40).status_code == 204  # same size: passes
    assert put(srv.url, alice, "/pub/b", b"y" * 10).status_code == 204  # shrinking: passes
    assert put(srv.url, alice, "/pub/c", b"z" * 30).status_code == 201  # the freed 30 bytes
    assert delete(srv.url, alice, "/pub/a").status_code == 204  # a DELETE always passes
    w.skip(2)
    users = admin(srv.url, "GET", "users").json()["users"]
    assert users == [{"user": alice.user, "bytes": 40, "keys": 2, "disabled": False}]
    w.close()


def test_quota_usage_is_exact_after_a_restart_and_retention(tmp_path, start, alice):
    srv = start(user_quota_bytes=5000, segment_bytes=64 * 1024)
    for i in range(40):
        assert put(srv.url, alice, f"/pub/k{i % 4}", bytes([65 + i % 26]) * (1000 + i)).status_code in (201, 204)
    expected = sum(1000 + i for i in range(36, 40))
    assert srv.call(lambda: srv.app.keyspace.live_bytes(alice.user)) == expected
    srv.call(lambda: srv.app.keyspace.apply_retention(0, 1))  # compacts: live values copied forward
    assert srv.call(lambda: srv.app.keyspace.live_bytes(alice.user)) == expected
    srv.stop()
    srv = start(user_quota_bytes=5000, segment_bytes=64 * 1024)
    assert srv.call(lambda: srv.app.keyspace.live_bytes(alice.user)) == expected
    before = last_seq(srv)
    refused(srv, put(srv.url, alice, "/pub/k9", b"q" * (5000 - expected + 1)), 507, "quota_exceeded", before)
    assert put(srv.url, alice, "/pub/k9", b"q" * (5000 - expected)).status_code == 201


# ---- rate limits ----

def test_user_write_bucket_exactly_empty_is_429_with_retry_after(start, alice, bob):
    srv = start(rate_user_writes=3)
    clock = freeze(srv, "user_writes")
    w = Watch(srv)
    for i in range(3):
        assert put(srv.url, alice, f"/pub/{i}").status_code == 201
    before = last_seq(srv)
    r = put(srv.url, alice, "/pub/3")
    refused(srv, r, 429, "rate_limited", before)
    assert int(r.headers["retry-after"]) >= 1
    refused(srv, delete(srv.url, alice, "/pub/0"), 429, "rate_limited", before)  # DELETE is a write too
    assert put(srv.url, bob, "/pub/x").status_code == 201  # bob has his own bucket
    w.skip(3)
    w.next_is(before + 1)
    clock.advance(1 / 3)
    assert put(srv.url, alice, "/pub/3").status_code == 201
    w.close()


def test_order_signup_before_rate_before_quota_auth_and_names_first(start, alice, bob):
    srv = start(signup="token", user_quota_bytes=10, rate_user_writes=1)
    clock = freeze(srv, "user_writes")
    token = admin(srv.url, "POST", "signup-tokens").json()["token"]
    assert signup(srv.url, alice, token).status_code == 201
    assert put(srv.url, alice, "/pub/a", b"x" * 10).status_code == 201
    before = last_seq(srv)
    refused(srv, put(srv.url, alice, "/pub/b", b"x" * 11), 429, "rate_limited", before)  # rate before quota
    refused(srv, put(srv.url, bob, "/pub/b"), 403, "forbidden", before)  # signup before rate
    r = httpx.put(srv.url + f"/{alice.user}/pub/c", content=b"x")
    refused(srv, r, 401, "unauthorized", before)  # auth before everything of 5.2
    bad = f"/{alice.user}/pub/%2e%2e/c"  # a '..' segment once decoded
    r = httpx.put(srv.url + bad, content=b"x",
                  headers={"authorization": alice.auth("PUT", f"/{alice.user}/pub/../c", b"x")})
    assert r.status_code == 400 and last_seq(srv) == before  # names first
    clock.advance(1)
    refused(srv, put(srv.url, alice, "/pub/b", b"x"), 507, "quota_exceeded", before)
    metrics = httpx.get(srv.url + "/metrics").text
    for name in ("forbidden", "rate_limited", "quota_exceeded"):  # each refusal counted once, as answered
        assert f"homestream_policy_{name}_total 1\n" in metrics, metrics


def test_ip_request_bucket_counts_every_request_and_keeps_spec_order(start, alice):
    srv = start(rate_ip_requests=4, rate_user_writes=1000)
    clock = freeze(srv, "ip_requests")
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert put(srv.url, alice, "/pub/hot").status_code == 201
        assert c.get(f"/{alice.user}/pub/hot").status_code == 200
        assert c.get(f"/{alice.user}/pub/hot").status_code == 200  # the fourth request: exactly empty now
        r = c.get(f"/{alice.user}/pub/hot")
        assert r.status_code == 429 and r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert c.get(f"/{alice.user}/pub/missing").status_code == 429  # the resource comes after the rate
        assert c.get("/not-a-user/pub/x").status_code == 400  # names come before it
        before = last_seq(srv)
        refused(srv, put(srv.url, alice, "/pub/w"), 429, "rate_limited", before)
        clock.advance(0.25)  # a token back
        assert c.get(f"/{alice.user}/pub/hot").status_code == 200
        assert c.get(f"/{alice.user}/pub/hot").status_code == 429


def test_read_cache_answers_are_counted_too(start, alice):
    srv = start(rate_ip_requests=50)
    freeze(srv, "ip_requests")
    assert put(srv.url, alice, "/pub/hot").status_code == 201
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        statuses = [c.get(f"/{alice.user}/pub/hot").status_code for _ in range(60)]
    hits = srv.call(lambda: srv.app.read_cache.hits)
    assert hits > 10, "the read cache did not answer: this test would not test it"
    assert statuses.count(200) <= 50 and statuses[-1] == 429


def test_open_streams_per_address_at_the_limit(start, alice):
    srv = start(rate_ip_streams=2)
    a = SSEReader(srv.port, "/subscribe?p=*")
    b = SSEReader(srv.port, f"/events-stream?user={alice.user}&live=true")
    assert a.head() == 200 and b.head() == 200
    c = SSEReader(srv.port, "/subscribe?p=*")
    assert c.head() == 429
    c.close()
    assert json.loads(c.body.decode() or c.raw.split(b"\r\n\r\n", 1)[1].decode())["error"] == "rate_limited"
    a.close()
    deadline = time.monotonic() + 5
    while srv.call(lambda: srv.app.policy.streams.count("127.0.0.1")) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    d = SSEReader(srv.port, "/subscribe?p=*&live=false")  # ends by itself: gives its slot back
    assert d.head() == 200
    d.read_frames(until_end=True)
    e = SSEReader(srv.port, "/subscribe?p=*")
    assert e.head() == 200
    b.close(), e.close()


def test_trusted_proxy_forwarded_addresses_get_their_own_buckets(start, alice):
    srv = start(rate_ip_requests=2, trusted_proxies=["127.0.0.0/8"])
    freeze(srv, "ip_requests")
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        one = {"x-forwarded-for": "203.0.113.1"}
        two = {"x-forwarded-for": "6.6.6.6, 203.0.113.2"}  # the client's own entry on the left is ignored
        assert [c.get("/healthz", headers=one).status_code for _ in range(3)] == [200, 200, 429]
        assert [c.get("/healthz", headers=two).status_code for _ in range(3)] == [200, 200, 429]
        forged = {"x-forwarded-for": "203.0.113.2, 6.6.6.7"}
        assert c.get("/healthz", headers=forged).status_code == 200  # the last untrusted entry counts


# ---- admin API ----

def test_admin_api_is_404_when_off_and_401_without_the_secret(tmp_path, alice):
    srv = ThreadServer(tmp_path / "d").start()
    try:
        assert admin(srv.url, "GET", "users").status_code == 404
        assert httpx.request("PATCH", srv.url + "/admin/x").status_code == 404
    finally:
        srv.stop()


def test_admin_auth_paths_and_methods(start, alice):
    srv = start()
    assert admin(srv.url, "GET", "users", secret="wrong").status_code == 401
    assert httpx.get(srv.url + "/admin/users").status_code == 401
    assert admin(srv.url, "GET", "nothing-here").status_code == 404
    assert admin(srv.url, "GET", "signup-tokens").status_code == 405
    assert admin(srv.url, "POST", "users/not-a-user/disable").status_code == 400
    assert admin(srv.url, "GET", "users").json() == {"users": []}


def test_a_disabled_users_writes_are_403_reads_unchanged(start, alice):
    srv = start()
    assert put(srv.url, alice, "/pub/a", b"hello").status_code == 201
    assert admin(srv.url, "POST", f"users/{alice.user}/disable").status_code == 204
    w = Watch(srv)
    before = last_seq(srv)
    refused(srv, put(srv.url, alice, "/pub/a", b"again"), 403, "forbidden", before)
    refused(srv, delete(srv.url, alice, "/pub/a"), 403, "forbidden", before)
    r = httpx.get(f"{srv.url}/{alice.user}/pub/a")
    assert r.status_code == 200 and r.content == b"hello"
    assert admin(srv.url, "GET", "users").json()["users"][0]["disabled"] is True
    assert admin(srv.url, "POST", f"users/{alice.user}/enable").status_code == 204
    assert put(srv.url, alice, "/pub/a", b"back").status_code == 204
    w.next_is(before + 1)
    w.close()


def test_deleting_a_user_emits_one_del_per_key(start, alice, bob):
    srv = start()
    paths = ["/pub/a", "/pub/b/c", "/priv/secret"]
    for p in paths:
        assert put(srv.url, alice, p).status_code == 201
    assert put(srv.url, bob, "/pub/keep").status_code == 201
    reader = SSEReader(srv.port, f"/subscribe?p={alice.user}/*",
                       headers={"authorization": alice.auth("GET", "/subscribe")})
    assert reader.head() == 200
    before = last_seq(srv)
    assert admin(srv.url, "DELETE", f"users/{alice.user}").status_code == 204
    got = events(reader.read_frames(3))
    assert [(e["event"], e["path"]) for e in got] == [("DEL", p) for p in sorted(paths, key=str.encode)]
    assert [e["seq"] for e in got] == [before + 1, before + 2, before + 3]
    assert last_seq(srv) == before + 3
    assert httpx.get(f"{srv.url}/{alice.user}/pub/a").status_code == 404
    assert [u["user"] for u in admin(srv.url, "GET", "users").json()["users"]] == [bob.user]
    reader.close()


def test_open_signup_needs_no_token_and_records_nothing(start, alice):
    srv = start()
    assert signup(srv.url, alice, None).status_code == 201
    assert srv.call(lambda: set(srv.app.policy.table.signed_up)) == set()
    assert not (srv.settings.data_path / "users.journal").exists()
    assert admin(srv.url, "GET", "users").json() == {"users": []}


def test_a_big_user_is_deleted_in_batches_with_every_del_event(start, alice, monkeypatch):
    from engine.admin import api as admin_api

    monkeypatch.setattr(admin_api, "DELETE_BATCH", 7)
    srv = start()
    paths = [f"/pub/many/{i:03d}" for i in range(30)]
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for p in paths:
            target = f"/{alice.user}{p}"
            assert c.put(target, content=b"v", headers={"authorization": alice.auth("PUT", target, b"v")}
                         ).status_code == 201
    w = Watch(srv)
    before = last_seq(srv)
    r = admin(srv.url, "DELETE", f"users/{alice.user}")
    assert r.status_code == 204
    assert last_seq(srv) == before + 30  # answered only after the last batch
    got = events(w.reader.read_frames(30))
    assert [(e["event"], e["path"], e["seq"]) for e in got] == [("DEL", p, before + 1 + i) for i, p in
                                                                 enumerate(paths)]
    assert srv.call(lambda: srv.app.keyspace.has_user(alice.user)) is False
    w.close()
