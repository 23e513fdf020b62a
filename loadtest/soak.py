"""Soak test: a homestream server with retention on, signed writers, subscribers that connect, resume and
disconnect at random, a few stalled subscribers; at the end every subscriber's deliveries are checked against what
was written and against the log, and the server's RSS over time is fitted with a line (its slope reported).

Bounded: `--minutes` (default 10) of load, then at most ~2 minutes of final reads and checks; everything talks to
127.0.0.1 only; the server is started here and stopped by its pid.

What runs:
- server: `python -m engine.cli serve` (signed writes), `--segment-bytes 1 MiB`, `--retention-bytes` (default
  8 MiB), `--retention-interval 5`;
- writers (`--writers`, total `--write-rate` writes/s, each its own ed25519 key): overwrites of a bounded set of
  public keys (so retention has dead records to drop), new public posts, private notes (which no subscriber here
  may see: they are unauthenticated), and DELETEs of earlier posts. Each acknowledged write's `Event-Id` is kept:
  that is the truth the deliveries are checked against;
- subscribers (`--subscribers`), each with one pattern (`*`, `<user>/*`, `*/pub/soak/posts/*`, an exact key),
  starting from an explicit resume point (`after=<last acknowledged seq>`, a few from `after=0`), reading for
  1-15 s, disconnecting, waiting up to 1.5 s and reconnecting with `Last-Event-ID`;
- stalled subscribers (`--stalled`, pattern `*`): small receive buffer, stop reading for 25-40 % of the run, then
  read again; past retention the server evicts them and they resume into an `event: gap`;
- "away" subscribers (every 7th): after their first session they stay disconnected for 30-45 % of the run, then
  resume with `Last-Event-ID`, which retention may have dropped by then (an `event: gap` first).
At the end each subscriber reads the rest of the history (`Last-Event-ID` + `live=false`) and is checked:
  expected = acknowledged events matching its pattern with seq in (its start point, last seq written];
  no seq twice; nothing unexpected (no private event, nothing never acknowledged); on each connection seqs strictly
  increase; every expected event was received or named by a gap frame, and no received event lies inside a gap
  (so the gaps name exactly the events not received). The log itself: a replay with `after=0&live=false` must be
  a gap (what retention dropped) followed by exactly the acknowledged public events after it.
Output (in loadtest/results/runs/, git-ignored; --out to change it): soak-<stamp>.json, soak-rss.png and
soak-deliveries.png (latest run), a summary on stdout; exit status 0 only when every check passed.

  python -m loadtest.soak                 # 10 minutes
  python -m loadtest.soak --minutes 1 --retention-bytes 2097152
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nacl.signing

from engine.bench.common import Scratch
from engine.bench.fanout import cpu_seconds, rss_bytes
from engine.bench.plot import require_matplotlib
from engine.bench.procs import wait_listening
from engine.http.auth import sign_request
from engine.names import encode_user

from .ssewire import Stream, crockford_id, crockford_seq

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results" / "runs"  # git-ignored: runs never dirty the tree


# ---------------------------------------------------------------- patterns (a reference for the check)


def matches(pattern: str, user: str, path: str) -> bool:
    """SPEC 3.1 for an unauthenticated subscriber: does `pattern` deliver the event of (user, path)?"""
    if not path.startswith("/pub/"):
        return False  # private events only to their authenticated owner; these subscribers never sign
    if pattern == "*":
        return True
    puser, _, ppath = pattern.partition("/")
    ppath = "/" + ppath
    if puser != "*" and puser != user:
        return False
    if ppath == "/*":
        return True
    if ppath.endswith("/*"):
        return path.startswith(ppath[:-1])
    return path == ppath


def slope_per_minute(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per minute."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var * 60


@dataclass
class Written:
    user: str
    path: str
    op: str  # PUT | DEL


@dataclass
class SubState:
    name: str
    pattern: str
    start_after: int
    stalled: bool = False
    away: bool = False  # once, stays disconnected for a long while (past retention) and then resumes
    received: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    last_id: str | None = None
    connections: int = 0
    order_errors: int = 0
    ends: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- server


class SoakServer:
    def __init__(self, workdir: Path, args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = workdir / "server.log"
        self.log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", str(workdir / "data"), "--port", str(self.port),
               "--log-level", "warning", "--segment-bytes", str(args.segment_bytes),
               "--retention-bytes", str(args.retention_bytes), "--retention-interval", str(args.retention_interval)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_listening(self.proc, self.port, "homestream", self.log_path.read_text)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


# ---------------------------------------------------------------- writers


async def _http(reader, writer, method: str, target: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
    head = f"{method} {target} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n" + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    data = await reader.readexactly(n) if n else b""
    return status, hdrs, data


class Writer:
    def __init__(self, index: int, port: int, rate: float, keys: int, rng: random.Random, soak: "Soak"):
        self.key = nacl.signing.SigningKey(bytes([index + 1]) * 32)
        self.user = encode_user(bytes(self.key.verify_key))
        self.port, self.rate, self.keys, self.rng, self.soak = port, rate, keys, rng, soak
        self.posts: list[str] = []
        self.n = 0
        self.errors = 0

    async def run(self, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while time.monotonic() < stop_at:
                await self.one(reader, writer)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_at = time.monotonic()  # behind: do not burst to catch up
        finally:
            writer.close()

    async def one(self, reader, writer) -> None:
        self.n += 1
        r = self.rng.random()
        method, body = "PUT", b""
        if r < 0.6:
            path = f"/pub/soak/status/{self.rng.randrange(self.keys)}.json"
            body = json.dumps({"n": self.n, "text": "s" * self.rng.randint(100, 2000)}).encode()
        elif r < 0.75:
            path = f"/pub/soak/posts/{crockford_id(time.time_ns() // 1000 * 16 + self.n % 16)}"
            body = json.dumps({"n": self.n, "content": "p" * self.rng.randint(200, 3000)}).encode()
            self.posts.append(path)
        elif r < 0.85:
            path = f"/priv/soak/notes/{self.n}"
            body = os.urandom(self.rng.randint(64, 1024))
        elif r < 0.92 and self.posts:
            method = "DELETE"
            path = self.posts.pop(self.rng.randrange(len(self.posts)))
        else:
            path = "/pub/soak/profile.json"
            body = json.dumps({"name": self.user[:8], "n": self.n}).encode()
        full = f"/{self.user}{path}"
        # every signed text differs (new paths, or a body carrying the write counter), so the current second is
        # never a replay; moving the timestamp on instead would drift past the server's 300 s skew window
        headers = {"Authorization": sign_request(self.key, method, full, body, int(time.time()))}
        if body:
            headers["Content-Type"] = "application/json" if path.startswith("/pub/") else "application/octet-stream"
        status, hdrs, data = await _http(reader, writer, method, full, headers, body)
        if status not in (201, 204) or "event-id" not in hdrs:
            self.errors += 1
            self.soak.problems.append(f"writer {self.user[:8]}: {method} {path} -> {status} {data[:200]!r}")
            return
        seq = crockford_seq(hdrs["event-id"])
        self.soak.written[seq] = Written(self.user, path, "DEL" if method == "DELETE" else "PUT")
        self.soak.writes += 1


# ---------------------------------------------------------------- subscribers


class Soak:
    def __init__(self, args, port: int, server_pid: int):
        self.args = args
        self.port = port
        self.pid = server_pid
        self.rng = random.Random(args.seed)
        self.written: dict[int, Written] = {}
        self.writes = 0
        self.deliveries = 0
        self.problems: list[str] = []
        self.samples: list[tuple[float, int, int, int, float]] = []  # t, rss, deliveries, writes, server cpu

    def last_acked(self) -> int:
        return max(self.written, default=0)

    async def connect(self, sub: SubState, live: bool):
        sock = socket.socket()
        if sub.stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        query = f"p={sub.pattern}"
        headers = "Accept: text/event-stream\r\n"
        if sub.last_id is not None:
            headers += f"Last-Event-ID: {sub.last_id}\r\n"
        else:
            query += f"&after={sub.start_after}"
        if not live:
            query += "&live=false"
        writer.write(f"GET /subscribe?{query} HTTP/1.1\r\nHost: soak\r\n{headers}\r\n".encode())
        sub.connections += 1
        return reader, writer

    async def read(self, sub: SubState, reader, until: float, stall: tuple[float, float] | None = None) -> str:
        """Read one connection until `until` (monotonic), its end frame or EOF; returns why it stopped."""
        stream = Stream()
        last_seq = -1
        while True:
            now = time.monotonic()
            if stall and now >= stall[0]:
                await asyncio.sleep(max(0.0, stall[1] - now))  # read nothing while the server keeps writing
                stall = None
                continue
            left = until - now
            if stall:
                left = min(left, stall[0] - now)
            if left <= 0 and not stall:
                return "deadline"
            try:
                data = await asyncio.wait_for(reader.read(1 << 16), max(left, 0.01))
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, OSError) as exc:
                return f"error {exc}"
            if not data:
                return "eof"
            for ev in stream.feed(data):
                if ev.event in ("PUT", "DEL"):
                    d = ev.json()
                    seq = d["seq"]
                    if crockford_seq(ev.id) != seq:
                        sub.errors.append(f"id {ev.id} but seq {seq}")
                    if seq <= last_seq:
                        sub.order_errors += 1
                    last_seq = seq
                    sub.received.append(seq)
                    sub.last_id = ev.id
                    self.deliveries += 1
                elif ev.event == "gap":
                    d = ev.json()
                    sub.gaps.append((d["from"], d["to"]))
                elif ev.event == "end":
                    reason = ev.json().get("reason")
                    sub.ends[reason] = sub.ends.get(reason, 0) + 1
                    return f"end {reason}"
            if stream.finished:
                return "eof"

    async def churn(self, sub: SubState, stop_at: float) -> None:
        rng = random.Random(f"{sub.name}-{self.args.seed}")
        first = True
        while time.monotonic() < stop_at:
            try:
                reader, writer = await self.connect(sub, live=True)
            except OSError as exc:
                sub.errors.append(f"connect: {exc}")
                await asyncio.sleep(1)
                continue
            until = min(stop_at, time.monotonic() + rng.uniform(1, 15))
            stall = None
            if sub.stalled and first:
                run = self.args.minutes * 60
                s0 = time.monotonic() + 3
                stall = (s0, min(stop_at - 2, s0 + rng.uniform(0.25, 0.4) * run))
                until = max(until, stall[1] + 5)
            try:
                await self.read(sub, reader, until, stall)
            finally:
                writer.close()
            if sub.away and first:
                away = rng.uniform(0.3, 0.45) * self.args.minutes * 60
                await asyncio.sleep(max(0.0, min(away, stop_at - time.monotonic() - 3)))
            first = False
            await asyncio.sleep(rng.uniform(0, 1.5))

    async def finish(self, sub: SubState) -> None:
        """Read the rest of the history after the writers stopped (live=false), resuming after evictions."""
        for _ in range(10):
            try:
                reader, writer = await self.connect(sub, live=False)
            except OSError as exc:
                sub.errors.append(f"final connect: {exc}")
                return
            try:
                why = await self.read(sub, reader, time.monotonic() + 60)
            finally:
                writer.close()
            if why in ("end history", "end limit"):
                return
            if why == "deadline":
                sub.errors.append("final read did not finish in 60 s")
                return
        sub.errors.append("final read: too many evictions")

    async def sample(self, stop: asyncio.Event) -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            try:
                self.samples.append((time.monotonic() - t0, rss_bytes(self.pid), self.deliveries, self.writes,
                                     cpu_seconds(self.pid)))
            except OSError:
                return
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def check(self, sub: SubState, last: int) -> dict:
        expected = {s for s, w in self.written.items()
                    if sub.start_after < s <= last and matches(sub.pattern, w.user, w.path)}
        got = set(sub.received)
        in_gaps = set()
        for a, b in sub.gaps:
            in_gaps.update(s for s in expected if a <= s <= b)
        gap_delivered = {s for s in got for a, b in sub.gaps if a <= s <= b}
        res = {
            "name": sub.name, "pattern": sub.pattern, "start_after": sub.start_after, "stalled": sub.stalled,
            "connections": sub.connections, "received": len(sub.received), "expected": len(expected),
            "duplicates": len(sub.received) - len(got), "unexpected": len(got - expected),
            "lost": len(expected - got - in_gaps), "named_by_gaps": len(in_gaps),
            "received_inside_gap": len(gap_delivered), "gap_frames": len(sub.gaps), "order_errors": sub.order_errors,
            "ends": sub.ends, "errors": sub.errors[:5],
        }
        res["ok"] = not (res["duplicates"] or res["unexpected"] or res["lost"] or res["received_inside_gap"]
                         or res["order_errors"] or sub.errors)
        return res

    async def check_log(self, last: int) -> dict:
        sub = SubState("log-replay", "*", 0)
        await self.finish(sub)
        public = {s for s, w in self.written.items() if matches("*", w.user, w.path)}
        first_retained = max((b for _, b in sub.gaps), default=0) + 1
        want = {s for s in public if s >= first_retained}
        got = set(sub.received)
        res = {"first_retained_seq": first_retained, "retained_public_events": len(got),
               "expected_retained": len(want), "missing": len(want - got), "unexpected": len(got - public),
               "duplicates": len(sub.received) - len(got), "errors": sub.errors[:5]}
        res["ok"] = not (res["missing"] or res["unexpected"] or res["duplicates"] or sub.errors)
        return res

    async def run(self) -> dict:
        a = self.args
        t_start = time.monotonic()
        stop_at = t_start + a.minutes * 60
        writers = [Writer(i, self.port, a.write_rate / a.writers, a.keys, random.Random(a.seed * 100 + i), self)
                   for i in range(a.writers)]
        users = [w.user for w in writers]
        patterns = ["*", f"{users[0]}/*", "*/pub/soak/posts/*", f"{users[-1]}/pub/soak/profile.json",
                    f"*/pub/soak/status/*", f"{users[1 % len(users)]}/pub/soak/*"]
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(self.sample(stop))
        wtasks = [asyncio.ensure_future(w.run(stop_at)) for w in writers]
        await asyncio.sleep(2)  # some history first, so that after=0 starters replay something
        subs = []
        for i in range(a.subscribers + a.stalled):
            stalled = i >= a.subscribers
            start = 0 if (i % 5 == 0 and not stalled) else self.last_acked()
            subs.append(SubState(f"{'stalled' if stalled else 'sub'}-{i}",
                                 "*" if stalled else patterns[i % len(patterns)], start, stalled,
                                 away=(i % 7 == 3 and not stalled)))
        stasks = [asyncio.ensure_future(self.churn(s, stop_at)) for s in subs]
        await asyncio.gather(*wtasks)
        await asyncio.gather(*stasks)
        load_s = time.monotonic() - t_start
        await asyncio.sleep(1.0)  # every acknowledged write published
        last = self.last_acked()
        await asyncio.wait_for(asyncio.gather(*(self.finish(s) for s in subs)), 120)
        log_check = await asyncio.wait_for(self.check_log(last), 120)
        stop.set()
        await sampler
        checks = [self.check(s, last) for s in subs]
        return {"load_seconds": round(load_s, 1), "last_seq": last, "writes": self.writes,
                "writer_errors": sum(w.errors for w in writers), "deliveries": self.deliveries,
                "subscribers": checks, "log": log_check}


# ---------------------------------------------------------------- report


def plot(samples, out: Path, slope_kib_min: float, fit_from: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [s[0] for s in samples]
    rss = [s[1] / 2**20 for s in samples]
    files = []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(ts, rss, label="server RSS")
    late = [(t, r) for t, r in zip(ts, rss) if t >= fit_from]
    if len(late) >= 2:
        n = len(late)
        mt = sum(t for t, _ in late) / n
        mr = sum(r for _, r in late) / n
        k = slope_kib_min / 1024 / 60
        ax.plot([late[0][0], late[-1][0]], [mr + k * (late[0][0] - mt), mr + k * (late[-1][0] - mt)], "--",
                label=f"fit after warm-up: {slope_kib_min:+.0f} KiB/min")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("homestream soak: server RSS")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "soak-rss.png", dpi=100)
    plt.close(fig)
    files.append(str(out / "soak-rss.png"))

    fig, ax = plt.subplots(figsize=(8, 3.5))
    dts, dels, wrs = [], [], []
    for a, b in zip(samples, samples[1:]):
        dt = b[0] - a[0]
        if dt > 0:
            dts.append(b[0])
            dels.append((b[2] - a[2]) / dt)
            wrs.append((b[3] - a[3]) / dt)
    ax.plot(dts, dels, label="deliveries/s (all subscribers)")
    ax.plot(dts, wrs, label="acknowledged writes/s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("per second")
    ax.set_title("homestream soak: throughput")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "soak-deliveries.png", dpi=100)
    plt.close(fig)
    files.append(str(out / "soak-deliveries.png"))
    return files


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="duration of the load (then ~1-2 min of checks)")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--write-rate", type=float, default=100.0, help="acknowledged writes/s, all writers together")
    p.add_argument("--keys", type=int, default=200, help="overwritten status keys per writer")
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument("--stalled", type=int, default=3)
    p.add_argument("--retention-bytes", type=int, default=8 << 20)
    p.add_argument("--segment-bytes", type=int, default=1 << 20)
    p.add_argument("--retention-interval", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(RESULTS),
                   help="directory for soak-<stamp>.json and the plots (default: loadtest/results/runs, git-ignored)")
    p.add_argument("--no-plots", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if not args.no_plots and (problem := require_matplotlib()) is not None:
        print(f"soak: no plots: {problem}", flush=True)
        args.no_plots = True
    with Scratch("hs-soak-") as scratch:  # removed on exit, Ctrl-C and SIGTERM
        server = SoakServer(Path(scratch.path), args)
        try:
            soak = Soak(args, server.port, server.proc.pid)
            import uvloop

            result = uvloop.run(asyncio.wait_for(soak.run(), args.minutes * 60 + 360))
        finally:
            code = server.stop()
            log_tail = server.log_path.read_text(errors="replace")[-3000:]
    samples = soak.samples
    warm = min(60.0, args.minutes * 60 * 0.25)
    late = [s for s in samples if s[0] >= warm]
    slope = slope_per_minute([s[0] for s in late], [s[1] / 1024 for s in late])
    rss = [s[1] for s in samples]
    cpu = samples[-1][4] - samples[0][4] if len(samples) > 1 else 0.0
    result.update({
        "started": started, "cores": os.cpu_count(), "command": "python -m loadtest.soak " + " ".join(
            sys.argv[1:] if argv is None else argv), "args": vars(args), "server_exit": code,
        "rss_mib_start": round(rss[0] / 2**20, 1) if rss else None,
        "rss_mib_max": round(max(rss) / 2**20, 1) if rss else None,
        "rss_mib_end": round(rss[-1] / 2**20, 1) if rss else None,
        "rss_slope_kib_per_min_after_warmup": round(slope, 1), "warmup_s": warm,
        "server_cpu_s": round(cpu, 1), "writer_problems": soak.problems[:10],
        "samples": [[round(t, 1), r, d, w] for t, r, d, w, _ in samples],
    })
    bad = [c for c in result["subscribers"] if not c["ok"]]
    result["ok"] = not bad and result["log"]["ok"] and not result["writer_errors"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"soak-{stamp}.json").write_text(json.dumps(result, indent=1))
    plots = [] if args.no_plots else plot(samples, out, slope, warm)
    print(f"soak {started}: {result['load_seconds']} s of load, {result['writes']} writes (errors "
          f"{result['writer_errors']}), last seq {result['last_seq']}, {result['deliveries']} deliveries")
    print(f"server RSS: start {result['rss_mib_start']} MiB, max {result['rss_mib_max']} MiB, end "
          f"{result['rss_mib_end']} MiB; slope after {warm:.0f} s warm-up: {slope:+.1f} KiB/min; "
          f"server CPU {result['server_cpu_s']} s")
    tot = {k: sum(c[k] for c in result["subscribers"]) for k in
           ("connections", "received", "expected", "duplicates", "unexpected", "lost", "named_by_gaps",
            "received_inside_gap", "gap_frames", "order_errors")}
    ends: dict = {}
    for c in result["subscribers"]:
        for k, v in c["ends"].items():
            ends[k] = ends.get(k, 0) + v
    print(f"subscribers: {len(result['subscribers'])} ({args.stalled} stalled), " +
          ", ".join(f"{k} {v}" for k, v in tot.items()) + f", end frames {ends}")
    print(f"log replay: {result['log']}")
    for c in bad:
        print(f"FAILED {c}")
    if result["writer_errors"]:
        print(f"writer problems: {soak.problems[:5]}")
    if code not in (0, None):
        print(f"server exit status {code}; log tail:\n{log_tail}")
    print(f"wrote {out / f'soak-{stamp}.json'} " + " ".join(plots))
    print("SOAK OK" if result["ok"] else "SOAK FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
