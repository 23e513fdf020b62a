"""Fan-out benchmark: N SSE subscribers on raw sockets, a publisher, server and client CPU measured.

Scenarios (each against a fresh server started here on 127.0.0.1, --open-writes, fsync=batch):
- burst: `--subscribers` connections all matching, `--events` PUTs written as fast as pipelining allows;
- steady: `--rate` events/s for `--seconds`; p50/p99 publish-to-delivery latency from the event's `ts`;
- scale: the burst again with `--extra-subscriptions` non-matching patterns registered first;
- replay: one subscriber with after=0 over `--replay-events` events already in the log.
Every connection's frames are checked: ids contiguous from the first seq, none missing, none repeated (frames
are counted in bulk per read; the first and last id of each read and the count must agree).
Figures: deliveries/s, server CPU-seconds per million deliveries (from /proc/<pid>/stat), client CPU, latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from .procs import free_port, wait_listening

CROCK = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
_ID = re.compile(rb"id: ([0-9A-Z]{13})\.")
_TS = re.compile(rb'"ts":(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default="burst,steady,scale,replay,idle",
                        help="comma-separated subset of burst,steady,scale,replay,idle")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000, help="burst size")
    parser.add_argument("--rate", type=float, default=100.0, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady duration")
    parser.add_argument("--extra-subscriptions", type=int, default=1_000_000,
                        help="non-matching patterns registered for the scale scenario")
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--idle", type=int, default=10_000, help="idle SSE connections for the memory figure")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--url", help="measure an already running server instead (no CPU figure)")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def crock(text: bytes) -> int:
    v = 0
    for c in text.decode():
        v = v * 32 + CROCK[c]
    return v


# ---------------------------------------------------------------- server


class ServerProc:
    def __init__(self, data: str, extra: list[str] | None = None):
        self.port = free_port()
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", data, "--port", str(self.port),
               "--open-writes", "--log-level", "warning", "--max-connections", "200000", *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.proc, self.port, "homestream", lambda: self.proc.stderr.read().decode())

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- subscriber processes


class Sub(asyncio.Protocol):
    __slots__ = ("expect", "count", "carry", "ok", "errors", "lat", "head_done", "transport", "done", "total",
                 "lat_sample")

    def __init__(self, first_seq: int, total: int, done: asyncio.Future, lat_sample: bool):
        self.expect = first_seq
        self.total = total
        self.count = 0
        self.carry = b""
        self.errors = 0
        self.lat: list[float] = []
        self.head_done = False
        self.done = done
        self.lat_sample = lat_sample

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        data = self.carry + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.carry = data
            return
        self.carry = data[cut + 2:]
        data = data[:cut + 2]
        n = data.count(b"\nevent: PUT")
        if not n:
            return
        first = _ID.search(data)
        last_at = data.rfind(b"id: ")
        last = _ID.match(data, last_at)
        if first is None or last is None:
            self.errors += 1
            return
        a, b = crock(first.group(1)), crock(last.group(1))
        if a != self.expect or b - a + 1 != n:
            self.errors += 1
        self.expect = b + 1
        self.count += n
        if self.lat_sample:
            ts = _TS.search(data, last_at)
            if ts:
                self.lat.append(now - int(ts.group(1)))
        if self.count >= self.total and not self.done.done():
            self.done.set_result(True)


async def _subscribers(port: int, n: int, query: str, first_seq: int, total: int, ready, go, out, timeout):
    loop = asyncio.get_running_loop()
    subs = []
    futures = []
    request = f"GET /subscribe?{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    for i in range(n):
        fut = loop.create_future()
        for attempt in range(50):
            try:
                tr, sub = await loop.create_connection(lambda: Sub(first_seq, total, fut, True), "127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        tr.write(request)
        subs.append(sub)
        futures.append(fut)
    await asyncio.sleep(0.5)  # every subscription registered before the publisher starts
    ready.set()
    await loop.run_in_executor(None, go.wait)
    try:
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except asyncio.TimeoutError:
        pass
    done_at = time.time()
    lat = []
    for s in subs:
        lat.extend(s.lat)
    out.put({"count": sum(s.count for s in subs), "errors": sum(s.errors for s in subs),
             "short": sum(1 for s in subs if s.count < total), "done_at": done_at, "lat": lat,
             "cpu": time.process_time()})
    for s in subs:
        s.transport.close()


def _sub_proc(port, n, query, first_seq, total, ready, go, out, timeout):
    import uvloop

    uvloop.run(_subscribers(port, n, query, first_seq, total, ready, go, out, timeout))


# ---------------------------------------------------------------- publisher


async def _publish(port: int, count: int, rate: float | None, start_index: int, conns: int = 4) -> float:
    """PUT `count` small values (pipelined, or paced at `rate`/s); returns the wall time of the first write."""
    body = b'{"text":"' + b"x" * 80 + b'"}'
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]

    def request(i: int) -> bytes:
        return (f"PUT /{USER}/pub/bench/{i:08d}.json HTTP/1.1\r\nHost: b\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/json\r\n\r\n").encode() + body

    async def drain(reader, n):
        got = bad = 0
        tail = b""
        while got + bad < n:
            data = await reader.read(1 << 20)
            if not data:
                raise RuntimeError(f"publisher connection closed after {got} answers")
            data = tail + data
            got += data.count(b"HTTP/1.1 2")
            bad += data.count(b"HTTP/1.1 4") + data.count(b"HTTP/1.1 5")
            tail = data[-9:]  # shorter than a marker: a status line split across reads is counted once
        if bad:
            raise RuntimeError(f"{bad} writes failed")
        return got

    t0 = time.time()
    if rate is None:
        per = [[] for _ in streams]
        for i in range(count):
            per[i % conns].append(request(start_index + i))
        tasks = []
        for (reader, writer), reqs in zip(streams, per):
            writer.write(b"".join(reqs))
            tasks.append(drain(reader, len(reqs)))
        await asyncio.gather(*tasks)
    else:
        reader, writer = streams[0]
        interval = 1.0 / rate
        next_at = time.monotonic()
        for i in range(count):
            writer.write(request(start_index + i))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await drain(reader, count)
    for _, writer in streams:
        writer.close()
    return t0


# ---------------------------------------------------------------- scenarios


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def run_fanout(server: ServerProc, subscribers: int, events: int, rate: float | None, procs: int,
               first_seq: int, query: str = "p=*/pub/bench/*") -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    readies = []
    workers = []
    per = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    timeout = 60 + (events / rate if rate else 0)
    for n in per:
        ready = ctx.Event()
        p = ctx.Process(target=_sub_proc, args=(server.port, n, query, first_seq, events, ready, go, out, timeout))
        p.start()
        readies.append(ready)
        workers.append(p)
    for r in readies:
        r.wait(120)
    cpu0 = server.cpu()
    go.set()
    import uvloop

    t0 = uvloop.run(_publish(server.port, events, rate, first_seq))
    results = [out.get(timeout=timeout + 60) for _ in workers]
    cpu1 = server.cpu()
    for p in workers:
        p.join(30)
    end = max(r["done_at"] for r in results)
    deliveries = sum(r["count"] for r in results)
    lat = [x for r in results for x in r["lat"]]
    wall = end - t0
    return {
        "subscribers": subscribers, "events": events, "expected": subscribers * events, "deliveries": deliveries,
        "lost": subscribers * events - deliveries, "order_errors": sum(r["errors"] for r in results),
        "short_connections": sum(r["short"] for r in results),
        "wall_s": round(wall, 3), "deliveries_per_s": round(deliveries / wall) if wall > 0 else 0,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_s_per_million": round((cpu1 - cpu0) / max(deliveries, 1) * 1e6, 3),
        "client_cpu_s": round(sum(r["cpu"] for r in results), 3),
        "latency_ms_p50": round(_percentile(lat, 50), 2), "latency_ms_p99": round(_percentile(lat, 99), 2),
    }


async def _replay(port: int, total: int) -> dict:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    t0 = time.time()
    tr, sub = await loop.create_connection(lambda: Sub(1, total, fut, False), "127.0.0.1", port)
    tr.write(b"GET /subscribe?p=*/pub/bench/*&after=0&live=false HTTP/1.1\r\nHost: b\r\n\r\n")
    try:
        await asyncio.wait_for(fut, 600)
    except asyncio.TimeoutError:
        pass
    wall = time.time() - t0
    tr.close()
    return {"events": sub.count, "order_errors": sub.errors, "wall_s": round(wall, 3),
            "events_per_s": round(sub.count / wall)}


async def _idle(port: int, n: int, server: ServerProc) -> dict:
    await asyncio.sleep(0.5)
    before = server.rss()
    socks = []
    loop = asyncio.get_running_loop()
    for _ in range(n):
        tr, _p = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        tr.write(b"GET /subscribe?p=*/pub/idle/* HTTP/1.1\r\nHost: b\r\n\r\n")
        socks.append(tr)
    await asyncio.sleep(2.0)
    after = server.rss()
    for tr in socks:
        tr.close()
    return {"connections": n, "rss_before": before, "rss_after": after,
            "bytes_per_connection": round((after - before) / n)}


def _register_extra(port: int, count: int) -> list:
    """Open connections subscribing to non-matching patterns until `count` patterns are registered."""
    socks = []
    per = 64
    i = 0
    while i < count:
        pats = "&".join(f"p={USER}/pub/other{(i + j) % 997}/k{i + j}.json" for j in range(min(per, count - i)))
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /subscribe?{pats} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        socks.append(s)
        i += per
    return socks


def run(args: argparse.Namespace) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="hs-fanout-") as tmp:
        for name in scenarios:
            server = ServerProc(os.path.join(tmp, name))
            try:
                if name == "burst":
                    results["burst"] = run_fanout(server, args.subscribers, args.events, None, args.client_procs, 1)
                elif name == "steady":
                    n = int(args.rate * args.seconds)
                    results["steady"] = run_fanout(server, args.subscribers, n, args.rate, args.client_procs, 1)
                elif name == "scale":
                    t = time.time()
                    socks = _register_extra(server.port, args.extra_subscriptions)
                    time.sleep(2 + args.extra_subscriptions / 200_000)
                    r = run_fanout(server, args.subscribers, args.events, None, args.client_procs, 1)
                    r["extra_subscriptions"] = args.extra_subscriptions
                    r["register_s"] = round(time.time() - t, 1)
                    results["scale"] = r
                    for s in socks:
                        s.close()
                elif name == "replay":
                    import uvloop

                    uvloop.run(_publish(server.port, args.replay_events, None, 1, conns=4))
                    results["replay"] = uvloop.run(_replay(server.port, args.replay_events))
                elif name == "idle":
                    import uvloop

                    results["idle"] = uvloop.run(_idle(server.port, args.idle, server))
            finally:
                server.stop()
            _print(name, results.get(name), args.json)
    if args.json:
        print(json.dumps(results))
    return 0


def _print(name: str, r: dict | None, as_json: bool) -> None:
    if r is None:
        return
    print(f"[{name}] " + ", ".join(f"{k}={v}" for k, v in r.items()), flush=True,
          file=sys.stderr if as_json else sys.stdout)
