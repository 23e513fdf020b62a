"""Fan-out benchmark: N SSE subscribers on raw sockets, a publisher, server and client CPU measured.

Scenarios (each against a fresh server started here on 127.0.0.1, --open-writes, fsync=batch):
- burst: `--subscribers` connections all matching, `--events` PUTs written as fast as pipelining allows;
- steady: `--rate` events/s for `--seconds`; p50/p99 publish-to-delivery latency from the event's `ts`;
- scale: the burst again with `--extra-subscriptions` non-matching patterns registered first;
- replay: one subscriber with after=0 over `--replay-events` events already in the log;
- idle: `--idle` subscribed connections that receive nothing: server memory per connection.
Every connection's frames are checked: ids contiguous from the first seq, none missing, none repeated (frames
are counted in bulk per read; the first and last id of each read and the count must agree).
Figures: deliveries/s, server CPU-seconds per million deliveries (from /proc/<pid>/stat), client CPU, latency.

Targets: burst ≥ 1,000,000 deliveries/s at ≤ 1 server CPU-s per million, nothing lost; steady p99 < 20 ms at
≤ 6 CPU-s per million; scale within 1.2× of the burst (stated for 1,000,000 extra subscriptions: --full);
replay ≥ 500,000 events/s; ≤ 8 KiB of server memory per idle connection. The default run is the quick one
(steady 10 s, 100,000 extra subscriptions, 100,000 replayed events, 2,000 idle connections); --full is the run
the targets are stated for (steady 20 s, 1,000,000, 1,000,000, 10,000).

examples:
  homestream bench fanout                                  # 1-6 minutes on 2 cores, as busy as they are
  homestream bench fanout --full --json > fanout.json
  homestream bench fanout --scenarios steady --plot fanout.png   # latency percentiles and CPU, as a PNG
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
import time

from .common import Figure, Progress, Scratch, add_size_options, pick, positive_float, positive_int, report
from .procs import free_port, wait_listening

CROCK = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
_ID = re.compile(rb"id: ([0-9A-Z]{13})\.")
_TS = re.compile(rb'"ts":(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")


SCENARIOS = ("burst", "steady", "scale", "replay", "idle")
QUICK = {"seconds": 10.0, "extra_subscriptions": 100_000, "replay_events": 100_000, "idle": 2_000}
FULL = {"seconds": 20.0, "extra_subscriptions": 1_000_000, "replay_events": 1_000_000, "idle": 10_000}


def configure(parser: argparse.ArgumentParser) -> None:
    add_size_options(parser, "steady 10 s, 100,000 extra subscriptions, 100,000 replayed, 2,000 idle",
                     "steady 20 s, 1,000,000 extra subscriptions, 1,000,000 replayed, 10,000 idle")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset of burst,steady,scale,replay,idle (default: all)")
    parser.add_argument("--subscribers", type=positive_int, default=1000,
                        help="subscribers of the burst, steady and scale scenarios (default: 1000)")
    parser.add_argument("--events", type=positive_int, default=2000, help="burst size (default: 2000)")
    parser.add_argument("--rate", type=positive_float, default=100.0, help="steady events per second (default: 100)")
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help="steady duration (default: 10; --full: 20)")
    parser.add_argument("--extra-subscriptions", type=positive_int, default=None,
                        help="non-matching patterns registered for the scale scenario "
                             "(default: 100,000; --full: 1,000,000)")
    parser.add_argument("--replay-events", type=positive_int, default=None,
                        help="events replayed from the log (default: 100,000; --full: 1,000,000)")
    parser.add_argument("--idle", type=positive_int, default=None,
                        help="idle SSE connections for the memory figure (default: 2,000; --full: 10,000)")
    parser.add_argument("--client-procs", type=positive_int, default=2,
                        help="subscriber processes (default: 2)")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="also write a PNG of the latency percentiles and the CPU per delivery "
                             "(default: none; needs matplotlib: pip install '.[loadtest]')")


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
        p = ctx.Process(target=_sub_proc, args=(server.port, n, query, first_seq, events, ready, go, out, timeout),
                        daemon=True)  # never outlives the bench, however it ends
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
        "latency_ms_p50": round(_percentile(lat, 50), 2), "latency_ms_p90": round(_percentile(lat, 90), 2),
        "latency_ms_p99": round(_percentile(lat, 99), 2), "latency_ms_p999": round(_percentile(lat, 99.9), 2),
        "latency_ms_max": round(max(lat), 2) if lat else float("nan"),
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


def _register_extra(port: int, count: int, progress: Progress | None = None) -> list:
    """Open connections subscribing to non-matching patterns until `count` patterns are registered."""
    socks = []
    per = 64
    i = 0
    while i < count:
        if progress is not None and i % (per * 500) == 0:
            progress.step(f"registering extra subscriptions {i:,}/{count:,}")
        pats = "&".join(f"p={USER}/pub/other{(i + j) % 997}/k{i + j}.json" for j in range(min(per, count - i)))
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /subscribe?{pats} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        socks.append(s)
        i += per
    return socks


def run(args: argparse.Namespace) -> int:
    import resource

    import uvloop

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        print(f"homestream bench: error: --scenarios takes {', '.join(SCENARIOS)}, not "
              f"{', '.join(unknown) or 'nothing'}", file=sys.stderr)
        return 2
    if args.plot:
        from .plot import require_matplotlib

        if (problem := require_matplotlib()) is not None:
            print(f"homestream bench: error: --plot: {problem}", file=sys.stderr)
            return 2
    seconds = pick(args, "seconds", QUICK["seconds"], FULL["seconds"])
    extra = pick(args, "extra_subscriptions", QUICK["extra_subscriptions"], FULL["extra_subscriptions"])
    replay_events = pick(args, "replay_events", QUICK["replay_events"], FULL["replay_events"])
    idle = pick(args, "idle", QUICK["idle"], FULL["idle"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress = Progress("bench fanout")
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count()}
    with Scratch("hs-fanout-") as scratch:
        for name in scenarios:
            started = time.monotonic()
            progress.step(f"{name}: starting a server")
            server = ServerProc(os.path.join(scratch.path, name))
            try:
                if name == "burst":
                    progress.step(f"burst: {args.subscribers:,} subscribers, {args.events:,} events")
                    results["burst"] = run_fanout(server, args.subscribers, args.events, None, args.client_procs, 1)
                elif name == "steady":
                    n = int(args.rate * seconds)
                    progress.step(f"steady: {args.subscribers:,} subscribers, {args.rate:g} events/s for "
                                  f"{seconds:g} s")
                    results["steady"] = run_fanout(server, args.subscribers, n, args.rate, args.client_procs, 1)
                elif name == "scale":
                    t = time.time()
                    socks = _register_extra(server.port, extra, progress)
                    try:
                        progress.step(f"scale: waiting for {extra:,} subscriptions to register")
                        time.sleep(2 + extra / 200_000)
                        progress.step(f"scale: burst with {extra:,} extra subscriptions")
                        r = run_fanout(server, args.subscribers, args.events, None, args.client_procs, 1)
                    finally:
                        for s in socks:
                            s.close()
                    r["extra_subscriptions"] = extra
                    r["register_s"] = round(time.time() - t, 1)
                    results["scale"] = r
                elif name == "replay":
                    progress.step(f"replay: writing {replay_events:,} events")
                    uvloop.run(_publish(server.port, replay_events, None, 1, conns=4))
                    progress.step(f"replay: reading {replay_events:,} events from the start")
                    results["replay"] = uvloop.run(_replay(server.port, replay_events))
                elif name == "idle":
                    progress.step(f"idle: opening {idle:,} connections")
                    results["idle"] = uvloop.run(_idle(server.port, idle, server))
            finally:
                server.stop()
            progress.note(f"{name}: done in {time.monotonic() - started:.1f} s")
    if args.plot:
        from .plot import fanout_plot

        fanout_plot(args.plot, {"homestream": plot_series(results)},
                    f"homestream bench fanout, {results['date']}, {results['cores']} cores")
        progress.note(f"wrote {args.plot}")
    if args.json:
        print(json.dumps(results))
    else:
        report(f"bench fanout: {args.subscribers:,} subscribers, server CPU from /proc, {results['cores']} cores",
               figures(results, full_size=extra >= FULL["extra_subscriptions"]))
    return 0


def plot_series(results: dict) -> dict:
    """What the plot shows of one target: steady latency percentiles (ms) and CPU-s per million deliveries."""
    steady = results.get("steady", {})
    return {"latency_ms": {p: steady[f"latency_ms_{p}"] for p in ("p50", "p90", "p99", "p999", "max")
                           if f"latency_ms_{p}" in steady},
            "cpu_s_per_million": {name: results[name]["server_cpu_s_per_million"] for name in ("burst", "steady")
                                  if name in results}}


def figures(results: dict, full_size: bool) -> list[Figure]:
    out = []
    if "burst" in results:
        b = results["burst"]
        out += [Figure(f"burst: {b['subscribers']:,} × {b['events']:,} events", b["deliveries_per_s"],
                       "deliveries/s", ">=", 1_000_000, note=f"{b['wall_s']} s"),
                Figure("burst: server CPU", b["server_cpu_s_per_million"], "s per million", "<=", 1.0),
                Figure("burst: lost + order errors", b["lost"] + b["order_errors"], "events", "<=", 0)]
    if "steady" in results:
        st = results["steady"]
        out += [Figure("steady: latency p50", st["latency_ms_p50"], "ms",
                       note=f"from the event's ts; p90 {st['latency_ms_p90']} ms"),
                Figure("steady: latency p99", st["latency_ms_p99"], "ms", "<=", 20,
                       note=f"max {st['latency_ms_max']} ms"),
                Figure("steady: server CPU", st["server_cpu_s_per_million"], "s per million", "<=", 6.0),
                Figure("steady: lost + order errors", st["lost"] + st["order_errors"], "events", "<=", 0)]
    if "scale" in results:
        sc = results["scale"]
        slower = (results["burst"]["deliveries_per_s"] / sc["deliveries_per_s"]
                  if "burst" in results and sc["deliveries_per_s"] else None)
        out += [Figure(f"scale: burst beside {sc['extra_subscriptions']:,} other subscriptions",
                       sc["deliveries_per_s"], "deliveries/s"),
                Figure("scale: slowdown against the burst", slower, "×", "<=", 1.2, judged=full_size,
                       why="target is for 1,000,000: --full")]
    if "replay" in results:
        rp = results["replay"]
        out.append(Figure(f"replay: {rp['events']:,} events after=0", rp["events_per_s"], "events/s", ">=",
                          500_000, note=f"{rp['order_errors']} order errors"))
    if "idle" in results:
        i = results["idle"]
        out.append(Figure(f"idle: {i['connections']:,} connections", i["bytes_per_connection"] / 1024,
                          "KiB per connection", "<=", 8))
    return out
