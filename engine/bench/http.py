"""HTTP benchmark: signed PUT and GET throughput and latency, homestream side by side with two peers.

Servers, each started here on 127.0.0.1 and stopped by pid: homestream (`serve --fsync batch`, signed writes
checked), a bare uvloop+h11 server answering 204 and storing nothing, and Starlette on uvicorn (`--http h11`,
uvloop) storing into a dict (skipped with a message when uvicorn/starlette are not installed: they are in the
`loadtest` extra). The load: `--connections` keep-alive connections (default 50), each sending its next request
when the previous answer arrived, `--seconds` per phase, 1 KiB PUT bodies with valid HS1 signatures made before
the timed phase (every server gets the same bytes); then GETs of the keys that PUT phase stored, cycled for the
whole phase (`get`: every stored key in turn, more than homestream's read cache holds), and GETs of only the
first `--hot-keys` of them (`get_hot`: a hot set, which the read cache answers). Each phase reports the load
generator's CPU and the server's CPU per thread.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

from .fanout import cpu_seconds
from .procs import free_port, wait_listening


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--body", type=int, default=1024, help="PUT body bytes")
    parser.add_argument("--servers", default="homestream,bare-h11,starlette",
                        help="comma-separated subset of homestream,bare-h11,starlette")
    parser.add_argument("--hot-keys", type=int, default=1000, help="keys cycled by the get_hot phase")


def _start(name: str, data: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if name == "homestream":
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", data, "--port", str(port),
               "--fsync", "batch", "--log-level", "warning"]
    elif name == "bare-h11":
        cmd = [sys.executable, "-m", "engine.bench.peers.bare_h11", str(port)]
    else:
        cmd = [sys.executable, "-m", "engine.bench.peers.starlette_dict", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(proc, port, name, lambda: proc.stderr.read().decode())
    return proc, port


def _signed_puts(n: int, body: bytes) -> tuple[list[bytes], list[bytes]]:
    """n signed PUT requests to distinct keys, and the GETs of those keys."""
    import nacl.signing

    from ..http.auth import sign_request
    from ..names import encode_user

    key = nacl.signing.SigningKey(b"\x07" * 32)
    user = encode_user(bytes(key.verify_key))
    now = int(time.time())
    puts, gets = [], []
    for i in range(n):
        target = f"/{user}/pub/bench/{i:08d}.json"
        auth = sign_request(key, "PUT", target, body, now)
        puts.append((f"PUT {target} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nAuthorization: {auth}\r\n\r\n").encode() + body)
        gets.append(f"GET {target} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    return puts, gets


class _Client(asyncio.Protocol):
    """One keep-alive connection: sends a request, waits for the whole response, sends the next. With `wrap` it
    cycles through its requests until the deadline (GETs); without, each request is sent at most once (signed
    PUTs: a signature is accepted once). `succeeded` lists the indexes answered 2xx."""

    def __init__(self, requests: list[bytes], start: int, step: int, deadline: float, done: asyncio.Future,
                 wrap: bool = False):
        self.requests, self.i, self.step, self.deadline, self.done = requests, start, step, deadline, done
        self.wrap = wrap
        self.buf = b""
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.succeeded: list[int] = []
        self.current = -1
        self.sent_at = 0.0

    def connection_made(self, transport):
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if self.wrap and self.i >= len(self.requests):
            self.i %= len(self.requests)
        if self.i >= len(self.requests) or time.perf_counter() >= self.deadline:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.sent_at = time.perf_counter()
        self.current = self.i
        self.transport.write(self.requests[self.i])
        self.i += self.step

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            status = int(head[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                self.succeeded.append(self.current)
            self.buf = self.buf[end + 4 + length:]
            self.latencies.append(time.perf_counter() - self.sent_at)
            self._send()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


async def _phase(port: int, requests: list[bytes], connections: int, seconds: float, wrap: bool = False) -> dict:
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    deadline = time.perf_counter() + seconds
    clients, futures = [], []
    t0 = time.perf_counter()
    for c in range(connections):
        fut = loop.create_future()
        _, client = await loop.create_connection(
            lambda c=c, fut=fut: _Client(requests, c, connections, deadline, fut, wrap), "127.0.0.1", port)
        clients.append(client)
        futures.append(fut)
    await asyncio.gather(*futures)
    wall = time.perf_counter() - t0
    lat = sorted(x for cl in clients for x in cl.latencies)
    statuses: dict[int, int] = {}
    for cl in clients:
        for k, v in cl.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    n = len(lat)
    return {"requests": n, "req_per_s": round(n / wall), "p50_ms": round(lat[n // 2] * 1000, 2) if n else None,
            "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None, "statuses": statuses,
            "client_cpu_s": round(time.process_time() - cpu0, 2),
            "succeeded": sorted(i for cl in clients for i in cl.succeeded)}


def read_cache_counts(port: int) -> tuple[float, float] | None:
    """(hits, misses) of homestream's read cache from its /metrics, None for a server without one."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace") if response.status == 200 else ""
    except OSError:
        return None
    finally:
        conn.close()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("homestream_read_cache_hits_total", "homestream_read_cache_misses_total"):
            values[name] = float(value)
    if len(values) < 2:
        return None
    return values["homestream_read_cache_hits_total"], values["homestream_read_cache_misses_total"]


def _cache_share(before: tuple[float, float] | None, after: tuple[float, float] | None) -> dict:
    """The phase's read cache hits and misses (homestream only)."""
    if before is None or after is None:
        return {}
    return {"read_cache_hits": int(after[0] - before[0]), "read_cache_misses": int(after[1] - before[1])}


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process, by 'name:tid' (Linux /proc)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _busy_threads(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Threads that used at least 0.05 CPU-s between two readings: the loop, the committer, the verifiers."""
    spent = {name: round(cpu - before.get(name, 0.0), 2) for name, cpu in after.items()}
    return {name: cpu for name, cpu in spent.items() if cpu >= 0.05}


def run(args: argparse.Namespace) -> int:
    import uvloop

    if args.hot_keys < 1 or args.connections < 1 or args.seconds <= 0:
        print("bench http: --hot-keys and --connections must be at least 1, --seconds positive", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if "starlette" in names and not (importlib.util.find_spec("uvicorn") and importlib.util.find_spec("starlette")):
        print("bench http: skipping starlette: install the loadtest extra (pip install -e '.[loadtest]')",
              file=sys.stderr)
        names.remove("starlette")
    body = os.urandom(args.body // 2).hex().encode()[: args.body]
    budget = int(args.seconds * 60_000) + 10_000  # more signed requests than the phase can send
    print(f"bench http: signing {budget} requests ...", file=sys.stderr, flush=True)
    puts, gets = _signed_puts(budget, body)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                     "connections": args.connections, "seconds": args.seconds, "body": args.body}
    with tempfile.TemporaryDirectory(prefix="hs-http-") as tmp:
        for name in names:
            proc, port = _start(name, os.path.join(tmp, name))
            try:
                cpu0, threads0 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                put = uvloop.run(_phase(port, puts, args.connections, args.seconds))
                cpu1, threads1 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                stored = [gets[i] for i in put.pop("succeeded")]  # GET only what was stored, for the whole phase
                counts1 = read_cache_counts(port) if name == "homestream" else None
                get = uvloop.run(_phase(port, stored, args.connections, args.seconds, wrap=True))
                get.pop("succeeded")
                cpu2, threads2 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                counts2 = read_cache_counts(port) if name == "homestream" else None
                hot = uvloop.run(_phase(port, stored[:args.hot_keys], args.connections, args.seconds, wrap=True))
                hot.pop("succeeded")
                cpu3, threads3 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                counts3 = read_cache_counts(port) if name == "homestream" else None
                get.update(_cache_share(counts1, counts2))
                hot.update(_cache_share(counts2, counts3))
                put["server_cpu_s"] = round(cpu1 - cpu0, 2)
                get["server_cpu_s"] = round(cpu2 - cpu1, 2)
                hot["server_cpu_s"] = round(cpu3 - cpu2, 2)
                put["server_thread_cpu_s"] = _busy_threads(threads0, threads1)
                get["server_thread_cpu_s"] = _busy_threads(threads1, threads2)
                hot["server_thread_cpu_s"] = _busy_threads(threads2, threads3)
                results[name] = {"put": put, "get": get, "get_hot": hot}
                if not args.json:
                    print(f"[{name}] PUT {put}\n[{name}] GET {get}\n[{name}] GET hot {hot}", flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    base = results.get("bare-h11")
    if base and "homestream" in results:
        hs = results["homestream"]
        results["ratios"] = {
            "put_vs_bare": round(hs["put"]["req_per_s"] / base["put"]["req_per_s"], 2),
            "get_vs_bare": round(hs["get"]["req_per_s"] / base["get"]["req_per_s"], 2),
            "get_hot_vs_bare": round(hs["get_hot"]["req_per_s"] / base["get_hot"]["req_per_s"], 2),
        }
        if "starlette" in results:
            results["ratios"]["put_vs_starlette"] = round(
                hs["put"]["req_per_s"] / results["starlette"]["put"]["req_per_s"], 2)
    print(json.dumps(results) if args.json else f"ratios: {results.get('ratios')}")
    return 0
