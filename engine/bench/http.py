"""HTTP benchmark: signed PUT and GET throughput and latency, homestream side by side with two peers.

Servers, each started here on 127.0.0.1 and stopped by pid: homestream (`serve --fsync batch`, signed writes
checked), a bare uvloop+h11 server answering 204 and storing nothing, and Starlette on uvicorn (`--http h11`,
uvloop) storing into a dict (skipped with a message when uvicorn/starlette are not installed: they are in the
`loadtest` extra). The load: `--connections` keep-alive connections (default 50), each sending its next request
when the previous answer arrived, `--seconds` per phase, 1 KiB PUT bodies with valid HS1 signatures made before
the timed phase (every server gets the same bytes); then GETs of the keys that PUT phase stored, cycled for the
whole phase (`get`: every stored key in turn, more than homestream's read cache holds), and GETs of only the
first `--hot-keys` of them (`get_hot`: a hot set, which the read cache answers). All servers run at once and
take turns: each phase is cut into `--rounds` slices, one per server in a rotating order, so a shared machine
that slows down for a while slows every server alike; a phase's figures are summed over its slices, and the
ratios are given both summed and slice by slice. Each phase reports the load generator's CPU and the server's
CPU per thread (and homestream's read cache hits and misses).
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
    parser.add_argument("--rounds", type=int, default=5,
                        help="each phase is cut into this many slices, the servers taking turns slice by slice, "
                             "so a machine that slows down for a while slows every server alike")
    parser.add_argument("--policy", action="store_true",
                        help="also run homestream with token signups, a quota and rate limits on (limits too high "
                             "to refuse) as 'homestream+policy', beside the same server with them off")


def _start(name: str, data: str) -> tuple[subprocess.Popen, int]:
    from .policy import POLICY_SERVER, policy_flags, sign_up_bench_user

    port = free_port()
    if name in ("homestream", POLICY_SERVER):
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", data, "--port", str(port),
               "--fsync", "batch", "--log-level", "warning"]
        if name == POLICY_SERVER:
            cmd += policy_flags(data)
    elif name == "bare-h11":
        cmd = [sys.executable, "-m", "engine.bench.peers.bare_h11", str(port)]
    else:
        cmd = [sys.executable, "-m", "engine.bench.peers.starlette_dict", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(proc, port, name, lambda: proc.stderr.read().decode())
    if name == POLICY_SERVER:
        sign_up_bench_user(port, data, BENCH_SEED)
    return proc, port


BENCH_SEED = b"\x07" * 32  # the signing key of every bench PUT


def _signed_puts(n: int, body: bytes) -> tuple[list[bytes], list[bytes]]:
    """n signed PUT requests to distinct keys, and the GETs of those keys."""
    import nacl.signing

    from ..http.auth import sign_request
    from ..names import encode_user

    key = nacl.signing.SigningKey(BENCH_SEED)
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
    return {"requests": len(lat), "wall": wall, "latencies": lat, "statuses": statuses,
            "client_cpu_s": time.process_time() - cpu0,
            "succeeded": sorted(i for cl in clients for i in cl.succeeded),
            "next_index": max(cl.current for cl in clients) + 1}


class PhaseTally:
    """One server's phase summed over its rounds: what `bench http` reports for it."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.client_cpu = 0.0
        self.server_cpu = 0.0
        self.threads: dict[str, float] = {}
        self.cache: list[int] | None = None
        self.rounds: list[int] = []  # req/s of each round

    def add(self, result: dict, server_cpu: float, threads: dict[str, float], cache: dict) -> None:
        self.wall += result["wall"]
        self.latencies.extend(result["latencies"])
        for status, n in result["statuses"].items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.client_cpu += result["client_cpu_s"]
        self.server_cpu += server_cpu
        for name, cpu in threads.items():
            self.threads[name] = self.threads.get(name, 0.0) + cpu
        if cache:
            self.cache = [a + b for a, b in zip(self.cache or [0, 0], (cache["read_cache_hits"],
                                                                      cache["read_cache_misses"]))]
        self.rounds.append(round(result["requests"] / result["wall"]) if result["wall"] else 0)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)
        out = {"requests": n, "req_per_s": round(n / self.wall) if self.wall else 0,
               "p50_ms": round(lat[n // 2] * 1000, 2) if n else None,
               "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
               "statuses": self.statuses, "rounds_req_per_s": self.rounds,
               "client_cpu_s": round(self.client_cpu, 2), "server_cpu_s": round(self.server_cpu, 2),
               "server_thread_cpu_s": {k: round(v, 2) for k, v in self.threads.items() if v >= 0.05}}
        if self.cache is not None:
            out["read_cache_hits"], out["read_cache_misses"] = self.cache
        return out


def ratios(results: dict) -> tuple[dict, dict]:
    """(ratios of the summed phases, the same ratio round by round) of homestream against its peers."""
    pairs = {"put_vs_bare": ("put", "bare-h11"), "get_vs_bare": ("get", "bare-h11"),
             "get_hot_vs_bare": ("get_hot", "bare-h11"), "put_vs_starlette": ("put", "starlette"),
             "get_vs_starlette": ("get", "starlette")}
    whole, by_round = {}, {}
    hs = results.get("homestream")
    on = results.get("homestream+policy")  # --policy: the same server with SPEC 5.2's checks on
    for phase in ("put", "get", "get_hot") if hs is not None and on is not None else ():
        if hs[phase]["req_per_s"]:
            whole[f"{phase}_policy_on_vs_off"] = round(on[phase]["req_per_s"] / hs[phase]["req_per_s"], 3)
    for key, (phase, peer) in pairs.items():
        other = results.get(peer)
        if hs is None or other is None or not other[phase]["req_per_s"]:
            continue
        whole[key] = round(hs[phase]["req_per_s"] / other[phase]["req_per_s"], 2)
        by_round[key] = [round(a / b, 2) if b else None
                         for a, b in zip(hs[phase]["rounds_req_per_s"], other[phase]["rounds_req_per_s"])]
    return whole, by_round


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


def _thread_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each thread used between two readings of thread_cpu_seconds."""
    return {name: cpu - before.get(name, 0.0) for name, cpu in after.items()}


def run(args: argparse.Namespace) -> int:
    import uvloop

    if args.hot_keys < 1 or args.connections < 1 or args.seconds <= 0 or args.rounds < 1:
        print("bench http: --hot-keys, --connections and --rounds must be at least 1, --seconds positive",
              file=sys.stderr)
        return 2
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if args.policy and "homestream+policy" not in names:
        names.insert(names.index("homestream") + 1 if "homestream" in names else 0, "homestream+policy")
    if "starlette" in names and not (importlib.util.find_spec("uvicorn") and importlib.util.find_spec("starlette")):
        print("bench http: skipping starlette: install the loadtest extra (pip install -e '.[loadtest]')",
              file=sys.stderr)
        names.remove("starlette")
    body = os.urandom(args.body // 2).hex().encode()[: args.body]
    budget = int(args.seconds * 60_000) + 10_000  # more signed requests than the phase can send
    print(f"bench http: signing {budget} requests ...", file=sys.stderr, flush=True)
    puts, gets = _signed_puts(budget, body)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                     "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
                     "body": args.body}
    slice_s = args.seconds / args.rounds
    tallies = {name: {phase: PhaseTally() for phase in ("put", "get", "get_hot")} for name in names}
    sent = dict.fromkeys(names, 0)  # PUTs used so far: each signed request is sent at most once
    read = dict.fromkeys(names, 0)  # where the all-keys GET scan goes on next round
    stored: dict[str, list[bytes]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="hs-http-") as tmp:
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for name in names:
                servers[name] = _start(name, os.path.join(tmp, name))
            for phase in ("put", "get", "get_hot"):
                for r in range(args.rounds):
                    for name in names[r % len(names):] + names[:r % len(names)]:  # each server leads in turn
                        proc, port = servers[name]
                        if phase == "put":
                            requests, wrap = puts[sent[name]:], False
                        elif phase == "get":
                            keys = stored[name]
                            start = read[name] % max(1, len(keys))
                            requests, wrap = keys[start:] + keys[:start], True
                        else:
                            requests, wrap = stored[name][:args.hot_keys], True
                        if not requests:
                            continue
                        cpu0, threads0 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                        counts0 = read_cache_counts(port) if name.startswith("homestream") else None
                        result = uvloop.run(_phase(port, requests, args.connections, slice_s, wrap=wrap))
                        cpu1, threads1 = cpu_seconds(proc.pid), thread_cpu_seconds(proc.pid)
                        counts1 = read_cache_counts(port) if name.startswith("homestream") else None
                        if phase == "put":  # GET only what was stored
                            stored[name].extend(gets[sent[name] + i] for i in result["succeeded"])
                            sent[name] += result["next_index"]
                        elif phase == "get":
                            read[name] += result["requests"]
                        tallies[name][phase].add(result, cpu1 - cpu0, _thread_spent(threads0, threads1),
                                                 _cache_share(counts0, counts1))
        finally:
            for proc, _port in servers.values():
                proc.terminate()
            for proc, _port in servers.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    for name in names:
        results[name] = {phase: tally.summary() for phase, tally in tallies[name].items()}
        if not args.json:
            for phase, summary in results[name].items():
                print(f"[{name}] {phase} {summary}", flush=True)
    results["ratios"], results["ratios_by_round"] = ratios(results)
    print(json.dumps(results) if args.json else f"ratios: {results['ratios']}\nby round: {results['ratios_by_round']}")
    return 0
