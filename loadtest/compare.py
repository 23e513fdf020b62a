"""Side-by-side fan-out comparison: homestream against the servers an operator would otherwise deploy.

Targets, each started here on 127.0.0.1 (a fresh process per scenario) and stopped by its pid:
- homestream: `python -m engine.cli serve --open-writes` (as `homestream bench fanout`), subscribers on
  `/subscribe?p=*/pub/bench/*`, events written with PUT;
- sse-starlette: loadtest/peers/sse_starlette_app.py on uvicorn (uvloop + httptools), one asyncio.Queue per
  subscriber, events written with POST /pub;
- nchan: nginx + libnginx-mod-nchan, one worker, memory store, a private config from
  loadtest/peers/nchan.conf.template (own prefix, pid file, logs), EventSource subscribers on /sub/bench,
  events written with POST /pub/bench;
- redis: redis-server measured RAW (no SSE bridge): subscribers are RESP connections doing SUBSCRIBE, events are
  PUBLISH commands. This is the floor of what a pub/sub broker costs, not an SSE service: no HTTP, no SSE
  framing, no history.

Every target delivers frames of about the same size: for the peers the published body is a JSON object shaped
like homestream's event data (`seq`, `user`, `path`, `hash`, `size`, `ts`), so `"seq":N` identifies each
delivered event everywhere. The publisher is one pipelined keep-alive connection for every target (so that the
peers' seq order is the publish order).

Scenarios:
- burst: S subscribers, E events written as fast as pipelining allows; deliveries/s from the first write to the
  last delivery, server CPU-seconds per million deliveries, lost events, order errors (per connection the seqs
  must be contiguous; counted in bulk per read, as engine/bench/fanout.py does);
- burst-inflight: the same burst written by a publisher that keeps at most `--in-flight` (16) writes unanswered,
  as a real publisher waiting for its answers does; latency as in steady (from each write's send time);
- steady: S subscribers, R events/s for T s; latency = the subscriber's receive time minus the publisher's send
  time of that seq (the same clock and the same definition for every target; sampled on the last frame of each
  read), p50/p99;
- idle: N connections subscribed and silent; server RSS growth divided by N (nginx: master + worker);
- resume: S subscribers; each drops its connection once, after a random share of the events, and reconnects
  after 100-500 ms with `Last-Event-ID` (homestream, nchan) or plainly (sse-starlette, redis: no history);
  lost and duplicated events counted per subscriber against everything published.

Beside the targets, one `send-floor` line: a plain Python loop that `send()`s the same ~180-byte frame to S
loopback TCP sockets (read and discarded by a child process) `--floor-rounds` times, its CPU-s per million sends
(loopback charges much of the receiver's work to the sender): no server delivering one event per send can cost
much less, so every CPU figure can be read against it.

Usage (from the repository root; peers missing are installed with apt-get when run as root, else skipped):
  python -m loadtest.compare                       # full sizes, all targets, ~6-8 minutes on 2 cores
  python -m loadtest.compare --quick               # small sizes, ~2 minutes
  python -m loadtest.compare --targets homestream,nchan --scenarios burst,steady
Writes loadtest/results/compare-<date>.{md,json} and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from pathlib import Path

from engine.bench.fanout import USER, cpu_seconds, rss_bytes
from engine.bench.procs import wait_listening

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results"
PEERS = ROOT / "loadtest" / "peers"
TARGETS = ("homestream", "sse-starlette", "nchan", "redis")
SCENARIOS = ("burst", "burst-inflight", "steady", "idle", "resume")
SEQ = re.compile(rb'"seq":(\d+)')
TS = re.compile(rb'"ts":(\d+)')
ID_LINE = re.compile(rb"(?m)^id: ?([^\r\n]*)")
NCHAN_MODULE_PATHS = ("/usr/lib/nginx/modules/ngx_nchan_module.so", "/usr/share/nginx/modules/ngx_nchan_module.so")
HASH = "1ZtlYtfJsSG8l2CHPXh4kO9NQpqtM6cLQFuqD6CKH1M="
HS_BODY = b'{"text":"' + b"x" * 80 + b'"}'

# ---------------------------------------------------------------- wire formats per target (pure, picklable)

# the bytes after which everything received so far is whole frames
TERM = {"homestream": b"\n\n", "sse-starlette": b"\r\n\r\n", "nchan": b"\n\n", "redis": b"}\r\n"}
RESUMABLE = {"homestream": True, "sse-starlette": False, "nchan": True, "redis": False}


def subscribe_request(kind: str, last_id: bytes | None = None, channel: str = "bench") -> bytes:
    if kind == "redis":
        return f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(channel)}\r\n{channel}\r\n".encode()
    target = {"homestream": f"/subscribe?p=*/pub/{channel}/*", "sse-starlette": "/sub",
              "nchan": f"/sub/{channel}"}[kind]
    head = f"GET {target} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
    if last_id is not None:
        head += f"Last-Event-ID: {last_id.decode()}\r\n"
    return (head + "\r\n").encode()


def event_body(seq: int) -> bytes:
    """What the peers publish: shaped like homestream's event data, about the same size."""
    return (f'{{"seq":{seq},"user":"{USER}","path":"/pub/bench/{seq:08d}.json","hash":"{HASH}",'
            f'"size":{len(HS_BODY)},"ts":{int(time.time() * 1000)}}}').encode()


def publish_request(kind: str, seq: int) -> bytes:
    if kind == "homestream":
        return (f"PUT /{USER}/pub/bench/{seq:08d}.json HTTP/1.1\r\nHost: b\r\nContent-Length: {len(HS_BODY)}\r\n"
                "Content-Type: application/json\r\n\r\n").encode() + HS_BODY
    body = event_body(seq)
    if kind == "redis":
        return b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%d\r\n%s\r\n" % (len(body), body)
    path = "/pub" if kind == "sse-starlette" else "/pub/bench"
    return (f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + body


class ReplyCounter:
    """Counts publish answers on one connection: (ok, bad) so far. HTTP: status lines; Redis: reply lines."""

    def __init__(self, kind: str):
        self.redis = kind == "redis"
        self.tail = b""
        self.ok = 0
        self.bad = 0

    def feed(self, data: bytes) -> None:
        data = self.tail + data
        if self.redis:
            cut = data.rfind(b"\r\n") + 2
            whole, self.tail = data[:cut], data[cut:]
            n = whole.count(b"\r\n")
            bad = whole.count(b"\r\n-") + (1 if whole.startswith(b"-") else 0)
            self.ok += n - bad
            self.bad += bad
            return
        self.ok += data.count(b"HTTP/1.1 2")
        self.bad += data.count(b"HTTP/1.1 4") + data.count(b"HTTP/1.1 5")
        self.tail = data[-9:]  # shorter than a marker: a status line split across reads is counted once


def bulk_check(data: bytes, expect: int) -> tuple[int, int, int, bool]:
    """Whole frames of one read: (events, first seq, last seq, contiguous from `expect`). (0, ..) if none."""
    n = data.count(b'"seq":')
    if not n:
        return 0, 0, 0, True
    first = SEQ.search(data)
    last = SEQ.match(data, data.rfind(b'"seq":'))
    a, b = int(first.group(1)), int(last.group(1))
    return n, a, b, (a == expect and b - a + 1 == n)


def split_frames(buf: bytes, term: bytes) -> tuple[list[bytes], bytes]:
    """Whole frames of `buf` (each ending with `term`) and the unfinished rest."""
    frames = []
    start = 0
    while True:
        at = buf.find(term, start)
        if at < 0:
            return frames, buf[start:]
        frames.append(buf[start:at + len(term)])
        start = at + len(term)


def frame_seq_and_id(frame: bytes) -> tuple[int | None, bytes | None]:
    m = SEQ.search(frame)
    i = ID_LINE.search(frame)
    return (int(m.group(1)) if m else None), (i.group(1) if i else None)


def loss_and_dups(received: list[int], expected: range) -> dict:
    unique = set(received)
    want = set(expected)
    return {"lost": len(want - unique), "duplicated": len(received) - len(unique), "unexpected": len(unique - want)}


def histogram_percentile(hist: Counter, p: float) -> float:
    """p-th percentile of a histogram of 0.1 ms buckets, in ms."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = min(total - 1, int(p / 100 * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen > rank:
            return bucket / 10
    return float("nan")


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


class Server:
    """One target process started here; `pids` are what CPU and RSS are summed over."""

    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "server.log", "wb")
        env = dict(os.environ)
        if kind == "homestream":
            cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", str(workdir / "data"), "--port",
                   str(self.port), "--open-writes", "--log-level", "warning", "--max-connections", "200000"]
        elif kind == "sse-starlette":
            cmd = [sys.executable, "-m", "loadtest.peers.sse_starlette_app", str(self.port)]
        elif kind == "nchan":
            prefix = workdir / "nginx"
            for d in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
                (prefix / d).mkdir(parents=True, exist_ok=True)
            conf = (PEERS / "nchan.conf.template").read_text().format(
                prefix=prefix, port=self.port, module=nchan_module(),
                user_line="user root root;" if os.geteuid() == 0 else "")
            (prefix / "nginx.conf").write_text(conf)
            cmd = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        elif kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(workdir), "--maxclients", "15000", "--daemonize", "no",
                   "--loglevel", "warning"]
        else:
            raise ValueError(kind)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        wait_listening(self.proc, self.port, kind, (workdir / "server.log").read_text)
        self.pids = [self.proc.pid]
        if kind == "nchan":
            time.sleep(0.3)
            self.pids += children(self.proc.pid)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nginx: SIGTERM is its fast shutdown; its workers exit with the master
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def nchan_module() -> str:
    for p in NCHAN_MODULE_PATHS:
        if os.path.exists(p):
            return p
    raise FileNotFoundError("ngx_nchan_module.so")


def available(kind: str, install: bool) -> str | None:
    """None when the target can run, else why not (after trying apt-get when root and `install`)."""
    def missing() -> list[str]:
        if kind == "nchan":
            pk = []
            if not shutil.which("nginx"):
                pk.append("nginx-light")
            if not any(os.path.exists(p) for p in NCHAN_MODULE_PATHS):
                pk.append("libnginx-mod-nchan")
            return pk
        if kind == "redis":
            return [] if shutil.which("redis-server") else ["redis-server"]
        if kind == "sse-starlette":
            import importlib.util

            mods = ("uvicorn", "sse_starlette", "starlette", "uvloop", "httptools")
            return [m for m in mods if importlib.util.find_spec(m) is None]
        return []

    need = missing()
    if not need:
        return None
    if kind == "sse-starlette":
        return f"python packages missing: {', '.join(need)} (pip install -e '.[loadtest]')"
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"[compare] installing {' '.join(need)} with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], env=env, check=False)
        need = missing()
        if not need:
            return None
    return f"not installed: {' '.join(need)} (apt-get install {' '.join(need)}, as root)"


# ---------------------------------------------------------------- subscriber processes


class BulkSub(asyncio.Protocol):
    """Counts frames in bulk per read, checks per-connection contiguity, samples (seq, receive time)."""

    __slots__ = ("term", "expect", "total", "count", "carry", "errors", "done", "seqs", "times", "ts_lat",
                 "transport")

    def __init__(self, term: bytes, first_seq: int, total: int, done: asyncio.Future):
        self.term = term
        self.expect = first_seq
        self.total = total
        self.count = 0
        self.carry = b""
        self.errors = 0
        self.done = done
        self.seqs = array("q")
        self.times = array("d")
        self.ts_lat = array("d")  # receive time - the `ts` in the last frame of each read

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        data = self.carry + data
        cut = data.rfind(self.term)
        if cut < 0:
            self.carry = data
            return
        cut += len(self.term)
        self.carry = data[cut:]
        n, a, b, ok = bulk_check(data[:cut], self.expect)
        if not n:
            return
        if not ok:
            self.errors += 1
        self.expect = b + 1
        self.count += n
        self.seqs.append(b)
        self.times.append(now)
        ts = TS.search(data, data.rfind(b'"seq":'))
        if ts:
            self.ts_lat.append(now - int(ts.group(1)))
        if self.count >= self.total and not self.done.done():
            self.done.set_result(True)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(False)


async def _connect(loop, factory, port: int):
    for _ in range(100):
        try:
            return await loop.create_connection(factory, "127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("could not connect")


async def _bulk_worker(kind, port, n, first_seq, total, ready, go, out, times_q, timeout):
    loop = asyncio.get_running_loop()
    subs, futures = [], []
    request = subscribe_request(kind)
    for _ in range(n):
        fut = loop.create_future()
        tr, sub = await _connect(loop, lambda: BulkSub(TERM[kind], first_seq, total, fut), port)
        tr.write(request)
        subs.append(sub)
        futures.append(fut)
    await asyncio.sleep(1.0)  # every subscription registered before the publisher starts
    ready.set()
    await loop.run_in_executor(None, go.wait)
    try:
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except asyncio.TimeoutError:
        pass
    done_at = time.time()
    cpu = time.process_time()
    for s in subs:
        s.transport.close()
    pub_times = await loop.run_in_executor(None, times_q.get)
    hist: Counter = Counter()
    hist_ts: Counter = Counter()
    if pub_times:
        for s in subs:
            for seq, t in zip(s.seqs, s.times):
                i = seq - first_seq
                if 0 <= i < len(pub_times):
                    hist[int((t - pub_times[i]) * 10)] += 1
            for lat in s.ts_lat:
                hist_ts[int(lat * 10)] += 1
    out.put({"count": sum(s.count for s in subs), "errors": sum(s.errors for s in subs),
             "short": sum(1 for s in subs if s.count < total), "done_at": done_at, "cpu": cpu,
             "hist": dict(hist), "hist_ts": dict(hist_ts)})


def _bulk_proc(*args):
    import uvloop

    uvloop.run(_bulk_worker(*args))


class ResumeClient:
    """One logical subscriber: every frame parsed; drops its connection once, then reconnects (resuming when the
    target can) and reads until the last event arrives."""

    def __init__(self, kind: str, port: int, drop_after: int, delay: float, last_seq: int, done: asyncio.Future):
        self.kind, self.port, self.drop_after, self.delay, self.last_seq = kind, port, drop_after, delay, last_seq
        self.done = done
        self.received: list[int] = []
        self.last_id: bytes | None = None
        self.dropped = False
        self.reconnects = 0
        self.transport = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        client = self

        class P(asyncio.Protocol):
            def __init__(self):
                self.buf = b""

            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                frames, self.buf = split_frames(self.buf + data, TERM[client.kind])
                for f in frames:
                    client.frame(f, self.transport)

        last_id = self.last_id if (self.dropped and RESUMABLE[self.kind]) else None
        self.transport, _ = await _connect(loop, P, self.port)
        self.transport.write(subscribe_request(self.kind, last_id))

    def frame(self, frame: bytes, transport) -> None:
        if transport is not self.transport:
            return  # late bytes of the dropped connection
        seq, fid = frame_seq_and_id(frame)
        if seq is None:
            return
        self.received.append(seq)
        if fid:
            self.last_id = fid
        if not self.dropped and len(self.received) >= self.drop_after:
            self.dropped = True
            self.transport.close()
            self.transport = None
            self.reconnects += 1
            asyncio.get_running_loop().call_later(self.delay, lambda: asyncio.ensure_future(self.connect()))
        elif seq >= self.last_seq and not self.done.done():
            self.done.set_result(True)


async def _resume_worker(kind, port, specs, first_seq, total, ready, go, out, timeout):
    loop = asyncio.get_running_loop()
    clients = []
    for drop_after, delay in specs:
        c = ResumeClient(kind, port, drop_after, delay, first_seq + total - 1, loop.create_future())
        await c.connect()
        clients.append(c)
    await asyncio.sleep(1.0)
    ready.set()
    await loop.run_in_executor(None, go.wait)
    try:
        await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), timeout)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(0.5)  # late duplicates, if any, still counted
    expected = range(first_seq, first_seq + total)
    res = {"lost": 0, "duplicated": 0, "unexpected": 0, "reconnects": 0, "clients": len(clients)}
    for c in clients:
        for k, v in loss_and_dups(c.received, expected).items():
            res[k] += v
        res["reconnects"] += c.reconnects
        if c.transport is not None:
            c.transport.close()
    out.put(res)


def _resume_proc(*args):
    import uvloop

    uvloop.run(_resume_worker(*args))


# ---------------------------------------------------------------- publisher


async def publish(kind: str, port: int, count: int, rate: float | None, first_seq: int,
                  in_flight: int | None = None) -> list[float]:
    """Write `count` events on one pipelined connection (paced at `rate`/s when given, else at most `in_flight`
    unanswered when given, else all at once); the send time (ms) of each, in seq order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = ReplyCounter(kind)
    times: list[float] = []
    if in_flight:
        while replies.ok + replies.bad < count:
            sent = len(times)
            room = min(count - sent, in_flight - (sent - replies.ok - replies.bad))
            if room > 0:
                now = time.time() * 1000
                writer.write(b"".join(publish_request(kind, first_seq + sent + i) for i in range(room)))
                times.extend([now] * room)
            data = await asyncio.wait_for(reader.read(1 << 20), 600)
            if not data:
                raise RuntimeError(f"{kind}: publisher connection closed after {replies.ok} answers")
            replies.feed(data)
        writer.close()
        if replies.bad:
            raise RuntimeError(f"{kind}: {replies.bad} publishes failed")
        return times

    async def drain():
        while replies.ok + replies.bad < count:
            data = await reader.read(1 << 20)
            if not data:
                raise RuntimeError(f"{kind}: publisher connection closed after {replies.ok} answers")
            replies.feed(data)

    drainer = asyncio.ensure_future(drain())
    if rate is None:
        now = time.time() * 1000
        writer.write(b"".join(publish_request(kind, first_seq + i) for i in range(count)))
        times = [now] * count
    else:
        interval = 1.0 / rate
        next_at = time.monotonic()
        for i in range(count):
            times.append(time.time() * 1000)
            writer.write(publish_request(kind, first_seq + i))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.wait_for(drainer, 600)
    writer.close()
    if replies.bad:
        raise RuntimeError(f"{kind}: {replies.bad} publishes failed")
    return times


# ---------------------------------------------------------------- scenarios


def _spawn_workers(target, procs, make_args):
    ctx = mp.get_context("spawn")
    out, go, times_q = ctx.Queue(), ctx.Event(), ctx.Queue()
    workers, readies = [], []
    for i in range(procs):
        ready = ctx.Event()
        p = ctx.Process(target=target, args=make_args(i, ready, go, out, times_q))
        p.start()
        workers.append(p)
        readies.append(ready)
    for r in readies:
        if not r.wait(180):
            raise RuntimeError("subscribers did not connect in 180 s")
    return workers, out, go, times_q


def scenario_bulk(server: Server, subscribers: int, events: int, rate: float | None, procs: int,
                  timeout: float, in_flight: int | None = None) -> dict:
    import uvloop

    per = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    wait = timeout + (events / rate if rate else 0)
    workers, out, go, times_q = _spawn_workers(
        _bulk_proc, procs,
        lambda i, ready, go, out, tq: (server.kind, server.port, per[i], 1, events, ready, go, out, tq, wait))
    rss0 = server.rss()
    cpu0 = server.cpu()
    go.set()
    pub_times = uvloop.run(publish(server.kind, server.port, events, rate, 1, in_flight))
    t0 = pub_times[0] / 1000
    for _ in workers:
        times_q.put(pub_times if (rate or in_flight) else [])
    results = [out.get(timeout=wait + 120) for _ in workers]
    cpu1 = server.cpu()
    rss1 = server.rss()
    for p in workers:
        p.join(30)
    deliveries = sum(r["count"] for r in results)
    wall = max(r["done_at"] for r in results) - t0
    hist: Counter = Counter()
    hist_ts: Counter = Counter()
    for r in results:
        hist.update(r["hist"])
        hist_ts.update(r["hist_ts"])
    return {
        "subscribers": subscribers, "events": events, "in_flight": in_flight, "expected": subscribers * events, "deliveries": deliveries,
        "lost": subscribers * events - deliveries, "order_errors": sum(r["errors"] for r in results),
        "short_connections": sum(r["short"] for r in results), "wall_s": round(wall, 3),
        "deliveries_per_s": round(deliveries / wall) if wall > 0 else 0,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_s_per_million": round((cpu1 - cpu0) / max(deliveries, 1) * 1e6, 3),
        "client_cpu_s": round(sum(r["cpu"] for r in results), 3),
        "server_rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        "latency_ms_p50": histogram_percentile(hist, 50), "latency_ms_p99": histogram_percentile(hist, 99),
        "latency_samples": sum(hist.values()),
        # from the `ts` in the event: homestream's append time (the write path excluded, as in `homestream bench
        # fanout`); for the peers the publisher's send time, so the same as above to the millisecond
        "latency_from_ts_ms_p50": histogram_percentile(hist_ts, 50),
        "latency_from_ts_ms_p99": histogram_percentile(hist_ts, 99),
    }


async def _idle(server: Server, n: int) -> dict:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.5)
    before = server.rss()
    answered = 0
    all_in = loop.create_future()

    class P(asyncio.Protocol):
        got = False

        def data_received(self, data):
            nonlocal answered
            if not self.got:
                self.got = True
                answered += 1
                if answered == n and not all_in.done():
                    all_in.set_result(True)

    conns = []
    request = subscribe_request(server.kind, channel="idle")
    for _ in range(n):
        tr, _p = await _connect(loop, P, server.port)
        tr.write(request)
        conns.append(tr)
    try:
        await asyncio.wait_for(all_in, 120)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(2.0)
    after = server.rss()
    for tr in conns:
        tr.close()
    return {"connections": n, "answered": answered, "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1), "bytes_per_connection": round((after - before) / n)}


def scenario_resume(server: Server, subscribers: int, events: int, rate: float, procs: int, timeout: float,
                    seed: int) -> dict:
    import uvloop

    rng = random.Random(seed)
    specs = [(rng.randint(events // 5, events * 3 // 5), rng.uniform(0.1, 0.5)) for _ in range(subscribers)]
    chunks = [specs[i::procs] for i in range(procs)]
    wait = timeout + events / rate
    workers, out, go, times_q = _spawn_workers(
        _resume_proc, procs,
        lambda i, ready, go, out, tq: (server.kind, server.port, chunks[i], 1, events, ready, go, out, wait))
    go.set()
    uvloop.run(publish(server.kind, server.port, events, rate, 1))
    results = [out.get(timeout=wait + 120) for _ in workers]
    for p in workers:
        p.join(30)
    res = {"subscribers": subscribers, "events": events, "rate": rate, "resumable": RESUMABLE[server.kind]}
    for key in ("lost", "duplicated", "unexpected", "reconnects"):
        res[key] = sum(r[key] for r in results)
    return res


# ---------------------------------------------------------------- send floor

FLOOR_FRAME = b"\r\n".join([b"b3", b"id: 00000000000001.bench", b"event: put", b"data: " + b"x" * 128, b"", b""])


def _floor_reader(port: int, n: int, ready) -> None:
    """Child process: open `n` connections to the floor's listener and read everything until they close."""
    import selectors

    sel = selectors.DefaultSelector()
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
    ready.set()
    open_ = n
    while open_:
        for key, _ev in sel.select(5):
            try:
                data = key.fileobj.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_ -= 1


def send_floor(subscribers: int, rounds: int) -> dict:
    """A plain loop of `send()` of one ~180-byte frame to `subscribers` loopback sockets, `rounds` times:
    this process's CPU-s per million sends (a few of them are partial or would block and are retried)."""
    ctx = mp.get_context("spawn")
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(4096)
        ready = ctx.Event()
        child = ctx.Process(target=_floor_reader, args=(ls.getsockname()[1], subscribers, ready))
        child.start()
        socks = [ls.accept()[0] for _ in range(subscribers)]
    if not ready.wait(60):
        raise RuntimeError("send-floor reader did not connect")
    frame = FLOOR_FRAME
    sends = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        for s in socks:
            s.sendall(frame)  # blocking: a full buffer waits for the reader instead of being dropped
        sends += len(socks)
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    for s in socks:
        s.close()
    child.join(60)
    return {"subscribers": subscribers, "rounds": rounds, "sends": sends, "frame_bytes": len(frame),
            "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_s_per_million": round(cpu / max(sends, 1) * 1e6, 3)}


# ---------------------------------------------------------------- table


def _fmt(v, nd=0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "n/a"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}"
    return str(v)


def table(results: dict) -> str:
    rows = [
        "| target | burst deliveries/s | burst server CPU-s / M | burst lost / order err "
        "| burst in flight: server CPU-s / M | burst in flight: p50 / p99 ms | burst in flight: lost / order err "
        "| steady p50 / p99 ms | steady server CPU-s / M | steady lost | idle RSS / conn (KiB) | resume lost / dup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["targets"].items():
        if "skipped" in r:
            rows.append(f"| {name} | skipped: {r['skipped']} |  |  |  |  |  |  |  |  |  |  |")
            continue
        b, f, s, i, z = (r.get(k) or {} for k in SCENARIOS)

        def err(d):
            return d.get("error")

        cells = [name]
        cells.append(err(b) or _fmt(b.get("deliveries_per_s")))
        cells.append("" if err(b) else _fmt(b.get("server_cpu_s_per_million"), 2))
        cells.append("" if err(b) else f"{_fmt(b.get('lost'))} / {_fmt(b.get('order_errors'))}")
        cells.append(err(f) or _fmt(f.get("server_cpu_s_per_million"), 2))
        cells.append("" if err(f) else f"{_fmt(f.get('latency_ms_p50'), 1)} / {_fmt(f.get('latency_ms_p99'), 1)}")
        cells.append("" if err(f) else f"{_fmt(f.get('lost'))} / {_fmt(f.get('order_errors'))}")
        cells.append(err(s) or f"{_fmt(s.get('latency_ms_p50'), 1)} / {_fmt(s.get('latency_ms_p99'), 1)}")
        cells.append("" if err(s) else _fmt(s.get("server_cpu_s_per_million"), 2))
        cells.append("" if err(s) else _fmt(s.get("lost")))
        cells.append(err(i) or (_fmt(i["bytes_per_connection"] / 1024, 1) if "bytes_per_connection" in i else "-"))
        if err(z):
            cells.append(err(z))
        elif z:
            note = "" if z.get("resumable") else " (no resume)"
            cells.append(f"{_fmt(z.get('lost'))} / {_fmt(z.get('duplicated'))}{note}")
        else:
            cells.append("-")
        rows.append("| " + " | ".join(cells) + " |")
    fl = results.get("send_floor")
    if fl and "error" not in fl:
        rows.append(f"| send-floor | {fl['subscribers']:,} sockets x {fl['rounds']:,} rounds of a {fl['frame_bytes']}-byte "
                    f"frame: {fl['cpu_s_per_million']:.2f} CPU-s per million sends |  |  |  |  |  |  |  |  |  |  |")
    elif fl:
        rows.append(f"| send-floor | {fl['error']} |  |  |  |  |  |  |  |  |  |  |")
    return "\n".join(rows)


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.compare", description=__doc__.split("\n")[0])
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--events", type=int, default=2000, help="burst size")
    p.add_argument("--in-flight", type=int, default=16, help="burst-inflight: most writes unanswered at once")
    p.add_argument("--floor-rounds", type=int, default=200, help="send-floor: frames sent to each socket (0: skip)")
    p.add_argument("--rate", type=float, default=100.0, help="steady events/s")
    p.add_argument("--seconds", type=float, default=20.0, help="steady duration")
    p.add_argument("--idle", type=int, default=10_000, help="idle connections")
    p.add_argument("--resume-subscribers", type=int, default=200)
    p.add_argument("--resume-events", type=int, default=1000)
    p.add_argument("--resume-rate", type=float, default=100.0)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300.0, help="longest wait for deliveries per scenario (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true",
                   help="small sizes: 200 subscribers, 500-event burst, 5 s steady, 2,000 idle, 50 resuming")
    p.add_argument("--no-install", action="store_true", help="skip missing peers instead of apt-get installing")
    p.add_argument("--out", default=str(RESULTS), help="directory for compare-<date>.md/.json")
    if p.parse_known_args(argv)[0].quick:  # the small sizes are defaults: explicit options still win
        p.set_defaults(subscribers=200, events=500, seconds=5.0, idle=2000, resume_subscribers=50,
                       resume_events=300, timeout=120.0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 1000:
        print(f"[compare] RLIMIT_NOFILE hard limit {hard} is below --idle {args.idle}: lowering it", flush=True)
        args.idle = max(100, hard - 1000)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
                     "command": "python -m loadtest.compare " + " ".join(sys.argv[1:] if argv is None else argv),
                     "args": vars(args), "targets": {}}
    with tempfile.TemporaryDirectory(prefix="hs-compare-") as tmp:
        for kind in targets:
            why = available(kind, not args.no_install)
            if why:
                print(f"[compare] {kind}: SKIPPED, {why}", flush=True)
                results["targets"][kind] = {"skipped": why}
                continue
            res: dict = {}
            results["targets"][kind] = res
            for name in scenarios:
                t_start = time.strftime("%H:%M:%S")
                try:
                    server = Server(kind, Path(tmp) / f"{kind}-{name}")
                except Exception as exc:  # a peer that does not start is reported, the others still run
                    res[name] = {"error": f"did not start: {exc}"[:200]}
                    print(f"[compare] {kind} {name}: {res[name]['error']}", flush=True)
                    continue
                try:
                    if name == "burst":
                        r = scenario_bulk(server, args.subscribers, args.events, None, args.client_procs,
                                          args.timeout)
                    elif name == "burst-inflight":
                        r = scenario_bulk(server, args.subscribers, args.events, None, args.client_procs,
                                          args.timeout, args.in_flight)
                    elif name == "steady":
                        r = scenario_bulk(server, args.subscribers, int(args.rate * args.seconds), args.rate,
                                          args.client_procs, args.timeout)
                    elif name == "idle":
                        import uvloop

                        r = uvloop.run(_idle(server, args.idle))
                    elif name == "resume":
                        r = scenario_resume(server, args.resume_subscribers, args.resume_events,
                                            args.resume_rate, args.client_procs, args.timeout, args.seed)
                    else:
                        raise ValueError(f"unknown scenario {name}")
                except Exception as exc:
                    r = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                finally:
                    server.stop()
                r["started"] = t_start
                res[name] = r
                print(f"[compare] {kind} {name} ({t_start}): " + ", ".join(f"{k}={v}" for k, v in r.items()),
                      flush=True)
    if args.floor_rounds > 0:
        try:
            results["send_floor"] = send_floor(args.subscribers, args.floor_rounds)
        except Exception as exc:
            results["send_floor"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        print(f"[compare] send-floor: {results['send_floor']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = (f"Fan-out comparison, {results['date']}, {results['cores']} cores, `{results['command']}`\n\n"
          + table(results) + "\n")
    hs = results["targets"].get("homestream", {}).get("steady", {})
    if "latency_from_ts_ms_p99" in hs:
        md += (f"\nhomestream steady latency from the event's `ts` (its append time: fan-out only, without the "
               f"write path and group commit): p50 {hs['latency_from_ts_ms_p50']:.1f} / p99 "
               f"{hs['latency_from_ts_ms_p99']:.1f} ms.\n")
    (out / f"compare-{stamp}.json").write_text(json.dumps(results, indent=1))
    (out / f"compare-{stamp}.md").write_text(md)
    print(md)
    print(f"[compare] wrote {out / f'compare-{stamp}.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
