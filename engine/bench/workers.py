"""`serve --workers 1` against `--workers 2`, side by side in one run, with a load client that costs little CPU.

Phases (each layout a fresh server on 127.0.0.1 with its own data directory, both running at once; a phase is
cut into slices that the layouts take in turns, 1-2-2-1, so a shared machine that slows down for a while
slows both alike):
- get: GETs of `--hot-keys` public keys (1 KiB values, stored first), cycled by `wrk` (Debian's wrk; install
  it with `apt-get install -y wrk`); req/s;
- put: signed 1 KiB PUTs to distinct keys, every request signed before the timed phase, each with its own
  timestamp inside the skew window; sent by wrk, each used once per server; req/s and non-2xx answers;
- fanout: `--subscribers` SSE subscribers and a burst of `--events` PUTs (engine/bench/fanout.py, servers with
  --open-writes); server CPU-seconds per million deliveries, summed over every process of the server; lost and
  duplicated deliveries counted;
- idle: `--idle` idle SSE connections; the server's memory (RSS summed over its processes) per connection.
Server CPU is read from /proc for the supervisor, the writer and the workers together.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from .fanout import cpu_seconds, rss_bytes
from .procs import free_port, wait_listening

GET_LUA = """
local n, paths, i = 0, {}, 0
function init(args)
  local f = io.open(args[1], "r")
  for line in f:lines() do n = n + 1; paths[n] = line end
  f:close()
  i = (tonumber(wrk.thread:get("id")) or 0) * 7919
end
function setup(thread) thread:set("id", tostring(_G.tid or 0)); _G.tid = (_G.tid or 0) + 1 end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % n) + 1])
end
"""

PUT_LUA = """
local reqs, n, i, step = {}, 0, 0, 1
function setup(thread) thread:set("id", tostring(_G.tid or 0)); _G.tid = (_G.tid or 0) + 1 end
function init(args)
  local f = io.open(args[1], "rb")
  local data = f:read("*a")
  f:close()
  local sep = "\\n@@SEP@@\\n"
  local pos = 1
  while true do
    local s, e = string.find(data, sep, pos, true)
    if not s then break end
    n = n + 1
    reqs[n] = string.sub(data, pos, s - 1)
    pos = e + 1
  end
  -- each thread takes its own contiguous range of `chunk` requests from `offset`: each is sent once
  local chunk = tonumber(args[3])
  i = tonumber(args[2]) + tonumber(wrk.thread:get("id")) * chunk
end
function request()
  local r = reqs[(i % n) + 1]
  i = i + 1
  return r
end
"""
SEP = b"\n@@SEP@@\n"
WRK_THREADS = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layouts", default="1,2", help="comma-separated --workers values to compare")
    parser.add_argument("--scenarios", default="get,put,fanout,idle", help="subset of get,put,fanout,idle")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per layout and phase")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--hot-keys", type=int, default=1000)
    parser.add_argument("--put-requests", type=int, default=60000, help="signed PUTs made before the put phase")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=10000, help="idle SSE connections")


class TreeServer:
    """`homestream serve --workers N` in a subprocess; CPU and memory summed over its process tree."""

    def __init__(self, workers: int, data: str, extra: list[str]):
        self.workers = workers
        self.port = free_port()
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", data, "--port", str(self.port),
               "--workers", str(workers), "--log-level", "warning", "--max-connections", "200000", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.proc, self.port, f"homestream --workers {workers}",
                       lambda: self.proc.stderr.read().decode())
        time.sleep(1.0 if workers > 1 else 0.2)  # the workers accept once the writer has recovered

    def pids(self) -> list[int]:
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as fh:
                        todo.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
        return out

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += rss_bytes(pid)
            except OSError:
                pass
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wrk(port: int, script: str, args: list[str], seconds: float, connections: int) -> dict:
    cmd = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
           "-s", script, f"http://127.0.0.1:{port}", "--", *args]
    cpu0 = _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    found = re.search(r"(\d+) requests in", out)
    if found is None:
        raise RuntimeError(f"wrk said: {out}{done.stderr}")
    requests = int(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    return {"requests": requests, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "p50": p50.group(1) if p50 else "", "client_cpu_s": _children_cpu() - cpu0}


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _turns(servers: dict[int, TreeServer], seconds: float, run_slice) -> dict[int, dict]:
    """Each layout gets `seconds` in two slices, in the order 1-2-2-1; figures summed per layout."""
    order = list(servers) + list(reversed(list(servers)))
    tally = {w: {"requests": 0, "seconds": 0.0, "non2xx": 0, "server_cpu_s": 0.0, "client_cpu_s": 0.0}
             for w in servers}
    for w in order:
        srv = servers[w]
        cpu0 = srv.cpu()
        t0 = time.perf_counter()
        r = run_slice(w, srv, seconds / 2)
        wall = time.perf_counter() - t0
        t = tally[w]
        t["requests"] += r["requests"]
        t["seconds"] += min(wall, seconds / 2 + 0.5)
        t["non2xx"] += r["non2xx"]
        t["server_cpu_s"] += srv.cpu() - cpu0
        t["client_cpu_s"] += r["client_cpu_s"]
    for t in tally.values():
        t["req_per_s"] = round(t["requests"] / t["seconds"]) if t["seconds"] else 0
        t["server_cpu_s"] = round(t["server_cpu_s"], 2)
        t["client_cpu_s"] = round(t["client_cpu_s"], 2)
        t["seconds"] = round(t["seconds"], 2)
    return tally


def _store_hot_keys(port: int, puts: list[bytes]) -> None:
    import asyncio

    import uvloop

    from .http import _phase

    result = uvloop.run(_phase(port, puts, 20, 120.0))
    ok = sum(v for k, v in result["statuses"].items() if 200 <= k < 300)
    if ok != len(puts):
        raise RuntimeError(f"storing the hot keys: {result['statuses']}")
    del asyncio


def _signed(n: int, body: bytes, prefix: str) -> tuple[list[bytes], list[str]]:
    """n signed PUTs to distinct keys, each with its own timestamp inside the skew window, and their paths."""
    import nacl.signing

    from ..http.auth import sign_request
    from ..names import encode_user

    key = nacl.signing.SigningKey(b"\x09" * 32)
    user = encode_user(bytes(key.verify_key))
    now = int(time.time())
    puts, paths = [], []
    for i in range(n):
        target = f"/{user}/pub/{prefix}/{i:08d}.json"
        auth = sign_request(key, "PUT", target, body, now - (i % 120))
        puts.append((f"PUT {target} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nAuthorization: {auth}\r\n\r\n").encode() + body)
        paths.append(target)
    return puts, paths


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None and {"get", "put"} & set(args.scenarios.split(",")):
        print("bench workers: needs wrk for the get and put phases (as root: apt-get install -y wrk)")
        return 2
    layouts = [int(w) for w in args.layouts.split(",")]
    scenarios = args.scenarios.split(",")
    tmp = tempfile.mkdtemp(prefix="hs-bench-workers-")
    report: dict = {"machine_cores": len(os.sched_getaffinity(0)), "layouts": layouts,
                    "seconds": args.seconds, "connections": args.connections, "wrk_threads": WRK_THREADS}
    body = (b'{"bench":"' + b"x" * 1000 + b'"}')[:1024]
    body = body + b" " * (1024 - len(body))
    try:
        if "get" in scenarios or "put" in scenarios:
            servers = {w: TreeServer(w, os.path.join(tmp, f"data-{w}"), []) for w in layouts}
            try:
                if "get" in scenarios:
                    hot, paths = _signed(args.hot_keys, body, "hot")
                    for srv in servers.values():
                        _store_hot_keys(srv.port, hot)
                    list_file = os.path.join(tmp, "hot.txt")
                    with open(list_file, "w") as fh:
                        fh.write("\n".join(paths) + "\n")
                    script = os.path.join(tmp, "get.lua")
                    with open(script, "w") as fh:
                        fh.write(GET_LUA)
                    report["get"] = _turns(servers, args.seconds, lambda w, srv, s: _wrk(
                        srv.port, script, [list_file], s, args.connections))
                if "put" in scenarios:
                    puts, _ = _signed(args.put_requests, body, "put")
                    req_file = os.path.join(tmp, "puts.bin")
                    with open(req_file, "wb") as fh:
                        fh.write(SEP.join(puts) + SEP)
                    script = os.path.join(tmp, "put.lua")
                    with open(script, "w") as fh:
                        fh.write(PUT_LUA)
                    offsets = {w: 0 for w in layouts}
                    chunk = len(puts) // (2 * WRK_THREADS)  # two slices per layout, one range per wrk thread

                    def put_slice(w, srv, s):
                        r = _wrk(srv.port, script, [req_file, str(offsets[w]), str(chunk)], s, args.connections)
                        offsets[w] += chunk * WRK_THREADS
                        if r["requests"] > chunk * WRK_THREADS:
                            print(f"bench workers: --put-requests {len(puts)} is too few for --workers {w}: "
                                  "some PUTs were replays (401)", file=sys.stderr)
                        return r

                    report["put"] = _turns(servers, args.seconds, put_slice)
            finally:
                for srv in servers.values():
                    srv.stop()
        if "fanout" in scenarios:
            from .fanout import run_fanout

            report["fanout"] = {}
            for w in layouts:
                srv = TreeServer(w, os.path.join(tmp, f"fan-{w}"), ["--open-writes"])
                try:
                    report["fanout"][w] = run_fanout(srv, args.subscribers, args.events, None,
                                                     max(1, min(4, args.subscribers // 250)), 1)
                finally:
                    srv.stop()
        if "idle" in scenarios:
            import uvloop

            from .fanout import _idle

            report["idle"] = {}
            for w in layouts:
                srv = TreeServer(w, os.path.join(tmp, f"idle-{w}"), ["--open-writes"])
                try:
                    report["idle"][w] = uvloop.run(_idle(srv.port, args.idle, srv))
                finally:
                    srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _ratios(report, layouts)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def _ratios(report: dict, layouts: list[int]) -> None:
    if len(layouts) < 2:
        return
    a, b = layouts[0], layouts[-1]
    ratios = {}
    for phase in ("get", "put"):
        if phase in report and report[phase][a]["req_per_s"]:
            ratios[f"{phase}_req_per_s"] = round(report[phase][b]["req_per_s"] / report[phase][a]["req_per_s"], 2)
    if "fanout" in report and report["fanout"][a]["server_cpu_s_per_million"]:
        ratios["fanout_cpu_per_million"] = round(report["fanout"][b]["server_cpu_s_per_million"]
                                                 / report["fanout"][a]["server_cpu_s_per_million"], 2)
    if "idle" in report and report["idle"][a]["bytes_per_connection"]:
        ratios["idle_bytes_per_connection"] = round(report["idle"][b]["bytes_per_connection"]
                                                    / report["idle"][a]["bytes_per_connection"], 2)
    report[f"ratio_{b}_over_{a}"] = ratios


def _print(report: dict) -> None:
    print(f"machine: {report['machine_cores']} usable cores; layouts --workers {report['layouts']}")
    for phase in ("get", "put"):
        for w, t in report.get(phase, {}).items():
            print(f"{phase:6s} --workers {w}: {t['req_per_s']:>7} req/s  ({t['requests']} in {t['seconds']} s, "
                  f"non-2xx {t['non2xx']}, server CPU {t['server_cpu_s']} s, wrk CPU {t['client_cpu_s']} s)")
    for w, r in report.get("fanout", {}).items():
        print(f"fanout --workers {w}: {r['server_cpu_s_per_million']} server CPU-s per million deliveries, "
              f"{r['deliveries_per_s']} deliveries/s, lost {r['lost']}, order errors {r['order_errors']}")
    for w, r in report.get("idle", {}).items():
        print(f"idle   --workers {w}: {r['bytes_per_connection']} bytes per idle SSE connection "
              f"({r['connections']} connections)")
    for key, value in report.items():
        if key.startswith("ratio_"):
            print(f"{key}: {value}")
