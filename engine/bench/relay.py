"""Relay benchmark: N homestream upstreams written at a steady rate, one relay, many subscribers on `*`.

For each N of `--upstreams` (default 4 and 16): N `homestream serve` processes (--open-writes, fsync=batch) and
one `homestream relay` following them, all started here on 127.0.0.1; `--subscribers` raw-socket SSE
subscribers on the relay (in `--client-procs` processes, the fan-out bench's checker: every connection's relay
ids contiguous, none missing, none repeated); one writer process PUTs `--rate` events/s to each upstream for
`--seconds`. Figures: events/s through the relay, lag from the upstream's append (`ts` of the event, as the
relay passes it on; the upstreams run fsync=never by default so that this is their commit) to delivery at the
subscriber, p50/p99; relay CPU per event and per delivery (from
/proc/<pid>/stat over the run). With `--baseline` the same subscribers read one homeserver written at N x rate
events/s, for the homeserver's own fan-out CPU per delivery (which also pays for its writes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

from .fanout import USER, ServerProc, _percentile, _sub_proc, cpu_seconds, run_fanout
from .procs import free_port, wait_listening


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstreams", default="4,16", help="comma-separated upstream counts to run")
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second to each upstream")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady duration of each run")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--upstream-fsync", default="never", choices=("always", "batch", "never"),
                        help="the upstreams' --fsync (default never: an upstream's ts is then its commit, so the "
                             "lag measured is upstream commit -> relay delivery, not N upstreams' fsyncs "
                             "competing for one disk); the relay itself keeps fsync=batch")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure one homeserver's fan-out at the same total rate")


class RelayProc:
    def __init__(self, data: str, upstream_urls: list[str]):
        self.port = free_port()
        cmd = [sys.executable, "-m", "engine.cli", "relay", "--data", data, "--port", str(self.port),
               "--log-level", "warning", "--max-connections", "200000", "--upstream-retry-max", "1"]
        for i, url in enumerate(upstream_urls):
            cmd += ["--upstream", f"u{i}={url}"]
        self.log_path = data + ".log"  # a file, not a pipe: a pipe nobody reads would stall the relay when full
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log)
        wait_listening(self.proc, self.port, "homestream relay", self.log_tail)

    def log_tail(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read()[-4000:].decode("utf-8", "replace")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def _write_steady(ports: list[int], rate: float, seconds: float) -> int:
    """PUT `rate`/s small values to each port for `seconds` (one connection each, answers drained alongside)."""
    import asyncio

    body = b'{"text":"' + b"x" * 80 + b'"}'
    count = int(rate * seconds)

    async def one(k: int, port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def drain() -> int:
            got, tail = 0, b""
            while got < count:
                data = await reader.read(1 << 16)
                if not data:
                    raise RuntimeError(f"upstream {k} closed the writer's connection after {got} answers")
                data = tail + data
                got += data.count(b"HTTP/1.1 2")
                if b"HTTP/1.1 4" in data or b"HTTP/1.1 5" in data:
                    raise RuntimeError(f"a write to upstream {k} failed")
                tail = data[-9:]
            return got

        drainer = asyncio.ensure_future(drain())
        interval = 1.0 / rate
        next_at = time.monotonic() + k * interval / len(ports)  # spread the upstreams over the interval
        for i in range(count):
            path = f"/{USER}/pub/bench/u{k}/{i:08d}.json"
            writer.write((f"PUT {path} HTTP/1.1\r\nHost: b\r\nContent-Length: {len(body)}\r\n"
                          "Content-Type: application/json\r\n\r\n").encode() + body)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        got = await drainer
        writer.close()
        return got

    results = await asyncio.gather(*(one(k, p) for k, p in enumerate(ports)))
    return sum(results)


def _writer_proc(ports: list[int], rate: float, seconds: float, go, out) -> None:
    import uvloop

    go.wait()
    out.put(uvloop.run(_write_steady(ports, rate, seconds)))


def _wait_subscribers(port: int, n: int, timeout: float = 120.0) -> None:
    """Until the server's homestream_subscribers gauge reaches n (late subscribers would miss the first events)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("homestream_subscribers ") and float(line.split()[1]) >= n:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not attach {n} subscribers within {timeout:g} s")


def run_relay(n: int, rate: float, seconds: float, subscribers: int, procs: int, tmp: str,
              upstream_fsync: str = "never") -> dict:
    ups = [ServerProc(os.path.join(tmp, f"up{n}-{i}"), ["--fsync", upstream_fsync]) for i in range(n)]
    relay = None
    workers = []
    try:
        relay = RelayProc(os.path.join(tmp, f"relay{n}"), [f"http://127.0.0.1:{u.port}" for u in ups])
        total = n * int(rate * seconds)
        ctx = mp.get_context("spawn")
        out, go = ctx.Queue(), ctx.Event()
        per = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
        timeout = 60 + seconds
        readies = []
        for k in per:
            ready = ctx.Event()
            p = ctx.Process(target=_sub_proc, args=(relay.port, k, "p=*", 1, total, ready, go, out, timeout))
            p.start()
            readies.append(ready)
            workers.append(p)
        for r in readies:
            r.wait(120)
        _wait_subscribers(relay.port, subscribers)  # a loaded relay may not have attached them all yet
        wout = ctx.Queue()
        writer = ctx.Process(target=_writer_proc, args=([u.port for u in ups], rate, seconds, go, wout))
        writer.start()
        time.sleep(1.0)  # the relay connected to every upstream
        cpu0 = relay.cpu()
        t0 = time.time()
        go.set()
        results = [out.get(timeout=timeout + 60) for _ in workers]
        cpu1 = relay.cpu()
        written = wout.get(timeout=60)
        writer.join(30)
        end = max(r["done_at"] for r in results)
        deliveries = sum(r["count"] for r in results)
        lat = [x for r in results for x in r["lat"]]
        cpu = cpu1 - cpu0
        wall = end - t0
        return {
            "upstreams": n, "upstream_fsync": upstream_fsync, "rate_per_upstream": rate, "seconds": seconds, "subscribers": subscribers,
            "written": written, "expected_deliveries": subscribers * total, "deliveries": deliveries,
            "lost": subscribers * total - deliveries, "order_errors": sum(r["errors"] for r in results),
            "events_per_s": round(total / wall, 1) if wall > 0 else 0,
            "deliveries_per_s": round(deliveries / wall) if wall > 0 else 0,
            "lag_ms_p50": round(_percentile(lat, 50), 2), "lag_ms_p99": round(_percentile(lat, 99), 2),
            "relay_cpu_s": round(cpu, 3),
            "relay_cpu_us_per_event": round(cpu / max(total, 1) * 1e6, 2),
            "relay_cpu_s_per_million_deliveries": round(cpu / max(deliveries, 1) * 1e6, 3),
        }
    finally:
        for p in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
        if relay is not None:
            relay.stop()
            tail = relay.log_tail().strip()
            if tail:
                print(f"[relay n={n} log] {tail[-1500:]}", file=sys.stderr, flush=True)
        for u in ups:
            u.stop()


def run(args: argparse.Namespace) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = [int(x) for x in args.upstreams.split(",") if x.strip()]
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="hs-relay-") as tmp:
        for n in counts:
            r = run_relay(n, args.rate, args.seconds, args.subscribers, args.client_procs, tmp, args.upstream_fsync)
            results["runs"].append(r)
            _print(f"relay n={n}", r, args.json)
            if args.baseline:
                server = ServerProc(os.path.join(tmp, f"base{n}"))
                try:
                    b = run_fanout(server, args.subscribers, n * int(args.rate * args.seconds), n * args.rate,
                                   args.client_procs, 1)
                finally:
                    server.stop()
                b["homeserver_cpu_s_per_million_deliveries"] = b.pop("server_cpu_s_per_million")
                r["baseline"] = b
                r["cpu_per_delivery_vs_homeserver"] = round(
                    r["relay_cpu_s_per_million_deliveries"] / max(b["homeserver_cpu_s_per_million_deliveries"],
                                                                  1e-9), 2)
                _print(f"homeserver n*rate={n * args.rate:g}/s", b, args.json)
    if args.json:
        print(json.dumps(results))
    return 0


def _print(name: str, r: dict, as_json: bool) -> None:
    print(f"[{name}] " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "baseline"), flush=True,
          file=sys.stderr if as_json else sys.stdout)
