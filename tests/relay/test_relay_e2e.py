"""`homestream relay` end to end (SPEC 5.4): real homestream upstreams on random ports, a pubky-style fake, and
the relay in a thread (or as `homestream relay` in a subprocess, for kill -9)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from e2e.harness import ProcessServer, ThreadServer
from e2e.sse_client import SSEReader
from engine.client import Client, Gap
from engine.client.stream import Event
from engine.names import encode_seq, encode_user, parse_resume_point
from engine.relay.app import build_relay

from .pubky_fake import PubkyFake

USERS = [encode_user(bytes([i + 40]) * 32) for i in range(3)]
pytestmark = pytest.mark.hard_timeout(60)


# ---- helpers ----

def write(url: str, n: int, start: int = 0, user: str = USERS[0], size: int = 8, client=None) -> None:
    """n open-writes PUTs (and a DEL every 7th) to a homestream upstream."""
    c = client or httpx.Client()
    try:
        for i in range(start, start + n):
            target = f"/{user}/pub/r/{i:05d}"
            if i % 7 == 6:
                assert c.delete(url + f"/{user}/pub/r/{i - 1:05d}").status_code == 204
            else:
                assert c.put(url + target, content=b"%0*d" % (size, i)).status_code in (201, 204)
    finally:
        if client is None:
            c.close()


def burst(port: int, n: int, size: int = 8, user: str = USERS[0]) -> None:
    """n open-writes PUTs pipelined on one raw connection, 500 at a time (fast: the relay gets a burst)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for start in range(0, n, 500):
            count = min(500, n - start)
            sock.sendall(b"".join(
                b"PUT /%s/pub/burst/%05d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                % (user.encode(), i, size, b"%0*d" % (size, i)) for i in range(start, start + count)))
            got = b""
            while got.count(b"HTTP/1.1 20") < count:
                part = sock.recv(1 << 16)
                assert part, "upstream closed the connection"
                got += part


def history(url: str, after: int = 0, timeout: float = 15.0) -> list[dict]:
    """Every frame of /subscribe?p=*&after=..&live=false on a server or relay (end frame excluded)."""
    r = SSEReader(int(url.rsplit(":", 1)[1]), f"/subscribe?p=*&after={after}&live=false&inline=1", timeout=timeout)
    try:
        frames = r.read_frames(until_end=True, timeout=timeout)
    finally:
        r.close()
    assert frames and frames[-1]["event"] == "end", frames[-3:]
    return frames[:-1]


def upstream_ids(url: str) -> list[str]:
    """The ids of a server's PUT/DEL events (its own gap frames left out)."""
    return [f["id"] for f in history(url) if f["event"] in ("PUT", "DEL")]


def wait_until(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def health(url: str) -> dict:
    return {u["name"]: u for u in httpx.get(url + "/healthz", timeout=5).json()["upstreams"]}


def caught_up(relay_url: str, want: dict[str, str]) -> bool:
    try:
        got = health(relay_url)
    except httpx.HTTPError:
        return False
    return all(got[name]["cursor"] == cursor for name, cursor in want.items())


def by_upstream(frames: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in frames:
        doc = json.loads(f["data"])
        out.setdefault(doc["upstream"], []).append({**doc, "event": f["event"], "id": f.get("id")})
    return out


def check_relay_stream(frames: list[dict]) -> None:
    """Relay seqs strictly increasing, every event id `<relay seq>.<user>` (gaps: the bare seq)."""
    seqs = [parse_resume_point(f["id"]) for f in frames]
    assert seqs == sorted(set(seqs)), "relay seqs repeat or go back"
    for f in frames:
        if f["event"] != "gap":
            doc = json.loads(f["data"])
            assert f["id"] == f"{encode_seq(doc['seq'])}.{doc['user']}"


def relay_settings(upstreams: dict[str, str], **kw) -> dict:
    return {"upstream": [f"{n}={u}" for n, u in upstreams.items()], "poll_interval": 0.1,
            "upstream_retry_max": 0.5, **kw}


@pytest.fixture
def upstreams(tmp_path):
    started = []

    def make(n: int, **kw) -> list[ThreadServer]:
        for _ in range(n):
            started.append(ThreadServer(tmp_path / f"up{len(started)}", open_writes=True, **kw).start())
        return started[-n:]

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def pubky():
    fake = PubkyFake(step=2).start()
    yield fake
    fake.stop()


@pytest.fixture
def relays(tmp_path):
    started = []

    def make(upstreams: dict[str, str], **kw) -> ThreadServer:
        srv = ThreadServer(tmp_path / "relay", build=build_relay, **relay_settings(upstreams, **kw)).start()
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()


# ---- merged delivery ----

def test_relay_merges_three_homestream_and_one_pubky_upstream_every_event_once_in_upstream_order(
        upstreams, pubky, relays):
    ups = upstreams(3)
    for i, up in enumerate(ups):
        write(up.url, 20, user=USERS[i])
    for i in range(15):
        pubky.add("DEL" if i % 5 == 4 else "PUT", USERS[i % 3], f"/pub/p/{i}")
    relay = relays({"a": ups[0].url, "b": ups[1].url, "c": ups[2].url, "p": pubky.url})
    live = SSEReader(relay.port, "/subscribe?p=*&after=0&inline=1", timeout=20)
    live.head()
    for i, up in enumerate(ups):  # more events while the relay is live
        write(up.url, 10, start=20, user=USERS[i])
    for i in range(15, 20):
        pubky.add("PUT", USERS[0], f"/pub/p/{i}")
    want = {n: str(len(upstream_ids(up.url))) for n, up in zip("abc", ups)}
    want["p"] = str(pubky.events[-1][0])
    wait_until(lambda: caught_up(relay.url, want), what="relay caught up with every upstream")
    total = sum(len(upstream_ids(up.url)) for up in ups) + len(pubky.events)
    frames = live.read_frames(total, timeout=20)
    live.close()
    assert len(frames) == total
    check_relay_stream(frames)
    assert [parse_resume_point(f["id"]) for f in frames] == list(range(1, total + 1))
    per = by_upstream(frames)
    for name, up in zip("abc", ups):
        theirs = history(up.url)
        assert [e["upstream_id"] for e in per[name]] == [f["id"] for f in theirs]  # once each, in their order
        for mine, f in zip(per[name], theirs):
            doc = json.loads(f["data"])
            assert (mine["event"], mine["user"], mine["path"], mine["ts"]) == (f["event"], doc["user"],
                                                                                doc["path"], doc["ts"])
            assert (mine.get("hash"), mine.get("size"), mine.get("body")) == (doc.get("hash"), doc.get("size"),
                                                                              doc.get("body"))
    assert [(e["event"], e["path"]) for e in per["p"]] == [(k, p) for _c, k, _u, p in pubky.events]
    # the fake skips every other cursor: only each page's last event knows its own
    assert per["p"][-1]["upstream_id"] == str(pubky.events[-1][0])
    h = health(relay.url)
    assert {n: (u["kind"], u["state"]) for n, u in h.items()} == {
        "a": ("homestream", "live"), "b": ("homestream", "live"), "c": ("homestream", "live"),
        "p": ("pubky", "polling")}
    metrics = httpx.get(relay.url + "/metrics").text
    assert f'homestream_relay_upstream_events_total{{upstream="a",kind="homestream"}} {want["a"]}' in metrics
    assert 'homestream_relay_upstream_events_total{upstream="p",kind="pubky"} 20' in metrics


def test_relay_patterns_events_page_and_refusals(upstreams, relays):
    (up,) = upstreams(1)
    write(up.url, 6, user=USERS[0])
    write(up.url, 3, user=USERS[1])
    relay = relays({"a": up.url})
    wait_until(lambda: caught_up(relay.url, {"a": "9"}))
    one = SSEReader(relay.port, f"/subscribe?p={USERS[1]}/pub/r/*&after=0&live=false")
    frames = [f for f in one.read_frames(until_end=True) if f["event"] == "PUT"]
    one.close()
    assert [json.loads(f["data"])["user"] for f in frames] == [USERS[1]] * 3
    page = httpx.get(relay.url + "/events/?cursor=2&limit=3").text.split("\n")
    assert len(page) == 4 and page[-1] == "cursor: 5" and page[0].startswith("PUT pubky://")
    stream = SSEReader(relay.port, f"/events-stream?user={USERS[1]}:7&live=false")
    pk = stream.read_frames(until_end=True)
    stream.close()
    assert [f["data"].split("\n")[1] for f in pk] == ["cursor: 8", "cursor: 9"]  # the relay's seqs, after 7
    assert pk[0]["data"].startswith(f"pubky://{USERS[1]}/pub/r/")
    r = httpx.put(relay.url + f"/{USERS[0]}/pub/x", content=b"v")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert httpx.get(relay.url + f"/{USERS[0]}/pub/r/00000").status_code == 404
    assert httpx.post(relay.url + "/subscribe").status_code == 405
    assert httpx.get(relay.url + "/subscribe?p=bad*pattern").status_code == 400


# ---- resume on the relay ----

def test_subscriber_resumes_on_the_relay_with_last_event_id_without_loss_or_duplicates(upstreams, relays):
    ups = upstreams(2)
    relay = relays({"a": ups[0].url, "b": ups[1].url})
    first = SSEReader(relay.port, "/subscribe?p=*", timeout=20)
    first.head()
    write(ups[0].url, 10, user=USERS[0])
    write(ups[1].url, 10, user=USERS[1])
    got = first.read_frames(12, timeout=20)[:12]
    first.close()
    last_id = got[-1]["id"]
    write(ups[0].url, 10, start=10, user=USERS[0])
    wait_until(lambda: caught_up(relay.url, {"a": str(len(upstream_ids(ups[0].url)))}))
    total = len(upstream_ids(ups[0].url)) + len(upstream_ids(ups[1].url))
    second = SSEReader(relay.port, "/subscribe?p=*", headers={"Last-Event-ID": last_id}, timeout=20)
    rest = second.read_frames(total - 12, timeout=20)
    second.close()
    ids = [f["id"] for f in got + rest]
    assert len(ids) == total and len(set(ids)) == total
    assert [parse_resume_point(i) for i in ids] == list(range(1, total + 1))


def test_python_client_and_its_dedupe_work_against_a_relay(upstreams, relays):
    (up,) = upstreams(1)
    write(up.url, 5)
    relay = relays({"a": up.url})
    wait_until(lambda: caught_up(relay.url, {"a": str(len(upstream_ids(up.url)))}))
    with Client(relay.url) as client:
        values = list(client.subscribe("*", after=0, live=False, inline=True))
    events = [v for v in values if isinstance(v, Event)]
    assert [e.seq for e in events] == list(range(1, 6)) and events[0].body == "00000000"
    assert json.loads(events[0].data)["upstream"] == "a"


# ---- upstream restart, retention gap ----

def test_upstream_killed_and_restarted_loses_and_repeats_nothing(tmp_path, relays):
    up = ProcessServer(tmp_path / "upk", extra=["--open-writes", "--fsync", "always"]).start()
    try:
        write(up.url, 15)
        relay = relays({"a": up.url})
        wait_until(lambda: caught_up(relay.url, {"a": "15"}), what="first copy")
        up.kill()  # kill -9
        wait_until(lambda: health(relay.url)["a"]["state"] == "backoff", what="relay notices the upstream died")
        up = ProcessServer(tmp_path / "upk", port=up.port, extra=["--open-writes", "--fsync", "always"]).start()
        write(up.url, 10, start=15)
        want = upstream_ids(up.url)
        wait_until(lambda: caught_up(relay.url, {"a": str(len(want))}), what="copy after the restart")
        frames = history(relay.url)
        assert [json.loads(f["data"])["upstream_id"] for f in frames] == want
        assert health(relay.url)["a"]["state"] == "live"
        assert 'homestream_relay_upstream_reconnects_total{upstream="a",kind="homestream"} 0' not in \
            httpx.get(relay.url + "/metrics").text
    finally:
        up.kill()


def test_upstream_retention_past_the_relays_cursor_gives_one_gap_and_the_relay_goes_on(tmp_path, upstreams):
    (up,) = upstreams(1, segment_bytes=64 * 1024)
    write(up.url, 5)
    relay = ThreadServer(tmp_path / "relay", build=build_relay, **relay_settings({"a": up.url})).start()
    wait_until(lambda: caught_up(relay.url, {"a": "5"}))
    relay.stop()
    write(up.url, 60, start=5, size=3000)  # ~3 segments of 64 KiB
    result = up.call(lambda: up.app.apply_retention(0, 1))
    first = up.app.log.first_seq
    assert result["compacted"] + result["removed"] >= 1 and first > 6
    relay = ThreadServer(tmp_path / "relay", build=build_relay, **relay_settings({"a": up.url})).start()
    try:
        last = parse_resume_point(upstream_ids(up.url)[-1])
        wait_until(lambda: caught_up(relay.url, {"a": str(last)}), what="relay past the gap")
        frames = history(relay.url)
        check_relay_stream(frames)
        kinds = [f["event"] for f in frames]
        assert kinds.count("gap") == 1 and kinds.index("gap") == 5
        assert json.loads(frames[5]["data"]) == {"upstream": "a", "from": 6, "to": first - 1}
        after = [json.loads(f["data"])["upstream_id"] for f in frames[6:]]
        assert after == upstream_ids(up.url)
        with Client(relay.url) as client:  # the client reports the upstream's gap and keeps the relay's seqs
            values = list(client.subscribe("*", after=0, live=False))
        gaps = [v for v in values if isinstance(v, Gap)]
        assert gaps == [Gap(6, first - 1, "a")]
        assert len([v for v in values if isinstance(v, Event)]) == len(frames) - 1
        assert health(relay.url)["a"]["state"] == "live"
    finally:
        relay.stop()


# ---- kill -9 of the relay ----

def test_relay_kill_9_under_load_then_restart_copies_every_event_once_in_order(tmp_path, upstreams):
    ups = upstreams(3)
    names = dict(zip("abc", (u.url for u in ups)))
    extra = ["--poll-interval", "0.1", "--upstream-retry-max", "0.5", "--log-level", "warning"]
    for n, u in names.items():
        extra += ["--upstream", f"{n}={u}"]
    relay = ProcessServer(tmp_path / "relay", extra=extra, command="relay").start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(up: ThreadServer, user: str) -> None:
        i = 0
        try:
            with httpx.Client() as c:
                while not stop.is_set() and i < 1500:
                    write(up.url, 20, start=i, user=user, client=c)
                    i += 20
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(u, USERS[k])) for k, u in enumerate(ups)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(int(u["cursor"] or 0) > 30 for u in health(relay.url).values()),
                   what="the relay copying under load")
        relay.kill()  # kill -9 while upstreams write and the relay copies
        time.sleep(0.3)
        relay = ProcessServer(tmp_path / "relay", port=relay.port, extra=extra, command="relay").start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    want = {n: upstream_ids(u) for n, u in names.items()}
    try:
        wait_until(lambda: caught_up(relay.url, {n: str(parse_resume_point(ids[-1])) for n, ids in want.items()}),
                   timeout=30, what="relay caught up after the restart")
        frames = history(relay.url, timeout=30)
    finally:
        relay.kill()
    check_relay_stream(frames)
    per = by_upstream(frames)
    for n in names:
        assert [e["upstream_id"] for e in per[n]] == want[n], f"upstream {n}: lost, repeated or reordered"
    assert sum(len(v) for v in want.values()) == len(frames)


def test_relay_sigterm_ends_streams_with_shutdown_and_exits_0(tmp_path, upstreams):
    (up,) = upstreams(1)
    write(up.url, 3)
    relay = ProcessServer(tmp_path / "relay", extra=["--upstream", f"a={up.url}"], command="relay").start()
    try:
        wait_until(lambda: caught_up(relay.url, {"a": "3"}))
        sub = SSEReader(relay.port, "/subscribe?p=*&after=0")
        sub.read_frames(3)
        rc, out = relay.terminate()
        frames = sub.read_frames(until_end=True, timeout=5)
        sub.close()
    finally:
        relay.kill()
    assert rc == 0, out
    assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"])["reason"] == "shutdown"


@pytest.mark.slow
def test_a_stalled_subscriber_of_the_relay_falls_back_to_the_log_and_gets_everything_once(upstreams, relays):
    (up,) = upstreams(1)
    relay = relays({"a": up.url}, send_queue_bytes=16 * 1024)
    stalled = SSEReader(relay.port, "/subscribe?p=*&inline=1", rcvbuf=4096, timeout=30)
    assert stalled.head() == 200
    burst(up.port, 3000, size=2000)  # inline bodies: ~6 MB of frames, past the socket buffers and send queue
    want = upstream_ids(up.url)
    wait_until(lambda: caught_up(relay.url, {"a": str(parse_resume_point(want[-1]))}), timeout=30)
    assert "homestream_catchups_total 0" not in httpx.get(relay.url + "/metrics").text  # it did fall behind
    frames = stalled.read_frames(len(want), timeout=30)
    stalled.close()
    assert [json.loads(f["data"])["upstream_id"] for f in frames] == want
    assert all(len(json.loads(f["data"]).get("body", "")) == 2000 for f in frames if f["event"] == "PUT")


def test_a_live_upstream_gap_reaches_every_live_subscriber_whatever_its_patterns(tmp_path):
    from client.sse_fake import FakeSSE

    user = USERS[0]
    digest = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

    def put_frame(seq: int) -> bytes:
        return (f'id: {encode_seq(seq)}.{user}\nevent: PUT\ndata: {{"seq":{seq},"user":"{user}",'
                f'"path":"/pub/a/{seq}","hash":"{digest}","size":1,"ts":1,"body":"x"}}\n\n').encode()

    def script(n, req):
        if n == 0:
            return [b"retry: 2000\n\n", put_frame(1), 1.5, b'event: gap\ndata: {"from":2,"to":9}\n\n',
                    put_frame(10), "close"]
        return []  # the relay reconnects after 10 and waits

    with FakeSSE(script) as fake:
        relay = ThreadServer(tmp_path / "relay", build=build_relay,
                             upstream=[{"name": "f", "url": fake.url, "kind": "homestream"}],
                             upstream_retry_max=0.5).start()
        try:
            wait_until(lambda: caught_up(relay.url, {"f": "1"}))
            everything = SSEReader(relay.port, "/subscribe?p=*")
            one_key = SSEReader(relay.port, f"/subscribe?p={user}/pub/other.json")
            everything.head(), one_key.head()
            got = everything.read_frames(2, timeout=10)
            only_gap = one_key.read_frames(1, timeout=10)
            everything.close(), one_key.close()
            wait_until(lambda: len(fake.requests) >= 2, what="the relay reconnecting")
        finally:
            relay.stop()
    assert [f["event"] for f in got[:2]] == ["gap", "PUT"]
    assert got[0]["id"] == encode_seq(2) and json.loads(got[0]["data"]) == {"upstream": "f", "from": 2, "to": 9}
    assert json.loads(got[1]["data"])["upstream_id"] == f"{encode_seq(10)}.{user}"
    assert [f["event"] for f in only_gap] == ["gap"]
    assert ("after", "10") in fake.requests[1].query


def test_a_dead_upstream_never_holds_up_the_others_and_homestream_tail_reads_the_relay(upstreams, relays):
    from commands.tailproc import TailProc
    from e2e.harness import free_port

    (up,) = upstreams(1)
    write(up.url, 4)
    relay = relays({"dead": f"http://127.0.0.1:{free_port()}", "a": up.url})
    wait_until(lambda: caught_up(relay.url, {"a": "4"}), what="the live upstream copied despite the dead one")
    h = health(relay.url)
    assert h["dead"]["state"] == "detecting" and h["dead"]["kind"] is None and h["dead"]["cursor"] is None
    assert h["dead"]["lag_s"] > 0 and h["a"]["state"] == "live"
    tail = TailProc(["*", "--after", "0", "--no-live", "--url", relay.url])
    assert tail.finish(30) == 0, tail.stderr
    ids = upstream_ids(up.url)
    assert [line.split()[0] for line in tail.lines] == [f["id"] for f in history(relay.url)]
    assert len(tail.lines) == len(ids) and tail.lines[0].split()[1] == "PUT"


def test_a_relay_follows_another_relay_detected_as_homestream(tmp_path, upstreams, relays):
    (up,) = upstreams(1)
    write(up.url, 5)
    first = relays({"a": up.url})
    wait_until(lambda: caught_up(first.url, {"a": "5"}))
    second = ThreadServer(tmp_path / "relay2", build=build_relay, **relay_settings({"r1": first.url})).start()
    try:
        wait_until(lambda: caught_up(second.url, {"r1": "5"}), what="the second relay copying the first")
        assert health(second.url)["r1"]["kind"] == "homestream"
        theirs, mine = history(first.url), history(second.url)
        assert [json.loads(f["data"])["upstream_id"] for f in mine] == [f["id"] for f in theirs]
        for f, g in zip(theirs, mine):
            a, b = json.loads(f["data"]), json.loads(g["data"])
            assert (a["path"], a.get("hash"), a.get("size"), a["ts"], a.get("body")) == (
                b["path"], b.get("hash"), b.get("size"), b["ts"], b.get("body"))
    finally:
        second.stop()
