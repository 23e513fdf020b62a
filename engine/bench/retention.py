"""Retention benchmark: the longest event-loop stall while a retention pass runs over a large log.

Builds a log (fsync=never) of about `--gib` GiB: first `--cold` keys written once (they stay live, so retention
copies them forward), then `--hot` keys overwritten until the size is reached (their old records are dead). Then,
on a uvloop, a probe task sleeps 1 ms in a loop and records the largest gap between its ticks while a writer task
keeps putting keys, and one retention pass brings the log down to `--keep-fraction` of its size. `--inline` runs
the pass the old way (Keyspace.apply_retention on the loop) for the "before" figure. Target (issue 18 item 7):
no stall over 10 ms.

Examples:
  homestream bench retention --gib 1
  homestream bench retention --gib 1 --inline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gib", type=float, default=1.0, help="log size to build (GiB, default 1)")
    parser.add_argument("--value-bytes", type=int, default=1000, help="bytes per value (default 1000)")
    parser.add_argument("--cold", type=int, default=200_000, help="keys written once, live (default 200,000)")
    parser.add_argument("--hot", type=int, default=50_000, help="keys overwritten (default 50,000)")
    parser.add_argument("--keep-fraction", type=float, default=0.25,
                        help="retention_bytes as a fraction of the built size (default 0.25)")
    parser.add_argument("--inline", action="store_true", help="run the pass on the loop (the old way)")
    parser.add_argument("--dir", default=None, help="log directory (default: a fresh temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the log directory")


def _build(directory: str, size: int, value_bytes: int, cold: int, hot: int) -> int:
    from engine.keyspace import Keyspace
    from engine.names import encode_user

    user = encode_user(bytes([7]) * 32)
    ks = Keyspace.open(directory, fsync="never")
    value = b"v" * value_bytes
    n = 0
    for i in range(cold):
        ks.put(user, f"/pub/cold/{i}", value)
        n += 1
    i = 0
    while ks.log.size_bytes < size:
        for _ in range(10_000):
            ks.put(user, f"/pub/hot/{i % hot}", value)
            i += 1
        n += 10_000
    ks.close()
    return n


async def _measure(directory: str, keep_bytes: int, inline: bool, value_bytes: int) -> dict:
    from engine.keyspace import Keyspace
    from engine.names import encode_user

    t0 = time.perf_counter()
    ks = Keyspace.open(directory, fsync="batch")
    open_s = time.perf_counter() - t0
    loop = asyncio.get_running_loop()
    ks.log.bind_loop(loop)
    user = encode_user(bytes([8]) * 32)
    before = ks.log.size_bytes
    keys_before = ks.count
    state = {"running": True, "max_gap": 0.0, "ticks": 0, "writes": 0, "gaps": []}

    async def probe() -> None:
        perf = time.perf_counter
        last = perf()
        while state["running"]:
            await asyncio.sleep(0.001)
            now = perf()
            state["max_gap"] = max(state["max_gap"], now - last - 0.001)
            state["gaps"].append(now - last - 0.001)
            state["ticks"] += 1
            last = now

    async def writer() -> None:
        value = b"w" * value_bytes
        while state["running"]:
            rec, _ = ks.put(user, f"/pub/w/{state['writes'] % 1000}", value)
            state["writes"] += 1
            await asyncio.sleep(0.001)

    await asyncio.sleep(0.05)
    # a baseline of the same length as nothing: the machine's own noise with the probe and writer only
    tasks = [loop.create_task(probe()), loop.create_task(writer())]
    await asyncio.sleep(1.0)
    baseline = state["max_gap"]
    baseline_p99 = _p99(state["gaps"])
    state["gaps"] = []
    state["max_gap"] = 0.0
    state["ticks"] = 0
    t0 = time.perf_counter()
    longest = longest_cpu = None
    if inline:
        result = ks.apply_retention(max_bytes=keep_bytes)
    else:
        rp = ks.retention_pass(max_bytes=keep_bytes)
        result = await rp.run()
        longest = round(rp.longest_step * 1000, 2)
        longest_cpu = f"{rp.longest_step_cpu * 1000:.2f} (ended at compaction.py:{rp.longest_step_cpu_at})"
    pass_s = time.perf_counter() - t0
    gaps = state["gaps"]
    await asyncio.sleep(0.01)
    state["running"] = False
    await asyncio.gather(*tasks)
    out = {
        "mode": "inline" if inline else "offloaded",
        "log_bytes_before": before, "log_bytes_after": ks.log.size_bytes, "keys": keys_before,
        "open_seconds": round(open_s, 3), "pass_seconds": round(pass_s, 3),
        "longest_step_on_loop_ms": longest if longest is not None else round(pass_s * 1000, 2),
        "longest_step_cpu_ms": longest_cpu,
        "max_loop_stall_ms": round(state["max_gap"] * 1000, 2), "p99_loop_stall_ms": _p99(gaps),
        "baseline_max_stall_ms": round(baseline * 1000, 2), "baseline_p99_stall_ms": baseline_p99,
        "probe_ticks_during_pass": state["ticks"], "writes_during_run": state["writes"],
        "compacted": result.get("compacted"), "removed": result.get("removed"),
    }
    # every cold key still reads back after the pass
    probe_user = encode_user(bytes([7]) * 32)
    e = ks.get(probe_user, "/pub/cold/0")
    out["cold_key_readable"] = e is not None and len(ks.read_value(e)) == value_bytes
    ks.close()
    return out


def _p99(gaps: list) -> float:
    if not gaps:
        return 0.0
    g = sorted(gaps)
    return round(g[min(len(g) - 1, int(len(g) * 0.99))] * 1000, 2)


def run(args: argparse.Namespace) -> int:
    import uvloop

    directory = args.dir or tempfile.mkdtemp(prefix="hs-bench-retention-")
    try:
        size = int(args.gib * (1 << 30))
        t0 = time.perf_counter()
        if not os.path.exists(os.path.join(directory, "meta.json")):
            n = _build(directory, size, args.value_bytes, args.cold, args.hot)
            print(f"built {n:,} records in {time.perf_counter() - t0:.1f} s", flush=True)
        out = uvloop.run(_measure(directory, int(size * args.keep_fraction), args.inline, args.value_bytes))
        if args.json:
            print(json.dumps(out))
        else:
            for k, v in out.items():
                print(f"{k:28} {v}")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    return 0
